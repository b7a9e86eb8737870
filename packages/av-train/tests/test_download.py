"""download-model: name validation and the offline explanation (never downloads)."""

import pytest

from av_train.download import MODEL_NAMES, DownloadError, download_model, repo_id_for
from av_train.download_command import main


@pytest.mark.parametrize("name", ["tiny", "base", "small", "medium", "large", "large-v2", "large-v3"])
def test_seed_readme_names_map_to_openai_repos(name):
    assert name in MODEL_NAMES
    assert repo_id_for(name) == f"openai/whisper-{name}"


def test_other_forms():
    assert repo_id_for("small.en") == "openai/whisper-small.en"
    assert repo_id_for("whisper-tiny") == "openai/whisper-tiny"
    assert repo_id_for("distil-whisper/distil-small.en") == "distil-whisper/distil-small.en"


def test_unknown_name_suggests_nearest():
    with pytest.raises(DownloadError, match=r"unknown Whisper model 'smal'.*Did you mean 'small'"):
        repo_id_for("smal")
    assert main(["larg-v3"]) == 2  # a user error: one line, exit 2 (README "Errors and exit codes")


def test_no_network_explains_what_to_do(tmp_path, capsys):
    # An endpoint nothing listens on stands for "no network"; the cache is an empty temp folder.
    with pytest.raises(DownloadError) as err:
        download_model("tiny", cache_dir=tmp_path / "hf", endpoint="http://127.0.0.1:9")
    text = str(err.value)
    assert "openai/whisper-tiny" in text and "no network" in text
    assert "av-cli import-ct2" in text and "local_model_only: true" in text
    assert not list((tmp_path / "hf").rglob("*.safetensors"))


def test_offline_mode_cli_exit_status(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    assert main(["base.en", "--cache-dir", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "openai/whisper-base.en" in err and "av-cli download-model base.en --output DIR" in err


def test_cached_model_messages_keep_their_streams(tmp_path, monkeypatch, capsys):
    # The library logs "already in the local cache"; the command shows it on stdout, as the print did.
    import huggingface_hub

    (tmp_path / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path))
    assert main(["tiny"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"openai/whisper-tiny is already in the local cache: {tmp_path}"
    assert f"openai/whisper-tiny is at {tmp_path}" in out and err == ""
