"""GenerationMetadata: JSON round trips, mrq compatibility, WAV tag / sidecar, safe embedded latents."""

import base64
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from src.errors import MetadataError, UnsafeLatents
from src.metadata import (
    GenerationMetadata,
    decode_embedded_latents,
    decode_latents_bytes,
    embed_metadata,
    encode_latents,
    read_metadata,
    save_metadata,
    sidecar_path,
)
from src.settings import GenerateDefaults

# What mrq's UI embedded (WEBUI_SPEC §2.6), for a single-line Sad run.
MRQ_METADATA = {
    "text": "[I am really sad,] Hello there.", "delimiter": "\\n", "emotion": "Sad", "prompt": "",
    "voice": "mary", "seed": 1234, "candidates": 1, "num_autoregressive_samples": 96,
    "diffusion_iterations": 80, "temperature": 0.8, "diffusion_sampler": "DDIM", "breathing_room": 8,
    "cvvp_weight": 0.0, "top_p": 0.8, "diffusion_temperature": 1.0, "length_penalty": 1.0,
    "repetition_penalty": 2.0, "cond_free_k": 2.0, "experimentals": ["Conditioning-Free"], "time": 12.3456,
    "datetime": "2023-02-28T22:13:21.123456", "model": "./models/tortoise/autoregressive.pth",
    "model_hash": "0123abcd", "some_future_key": {"x": 1},
}  # fmt: skip


def _wav(path: Path, seconds: float = 0.1, rate: int = 24000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16), rate, subtype="PCM_16")
    return path


def _latents_b64() -> str:
    buf = io.BytesIO()
    torch.save({"autoregressive": torch.randn(1, 1024), "diffusion": torch.randn(1, 2048)}, buf)
    return encode_latents(buf.getvalue())


def test_mrq_metadata_loads_with_keys_mapped():
    meta = GenerationMetadata.from_dict(MRQ_METADATA)
    assert meta.text == "Hello there."  # mrq's hidden prefix removed (it doubled on reload)
    assert meta.custom_emotion == "" and meta.time_taken_s == 12.3456 and meta.seed == 1234
    assert meta.experimentals == ("Conditioning-Free",) and meta.cond_free and not meta.half_precision
    assert meta.extra == {"some_future_key": {"x": 1}}
    out = meta.to_dict()
    assert out["prompt"] == "" and out["time"] == 12.3456 and out["some_future_key"] == {"x": 1}
    assert out["schema_version"] == 1 and list(out)[1:4] == ["text", "delimiter", "emotion"]


def test_json_round_trip_and_missing_keys():
    meta = GenerationMetadata(
        text="Hi.",
        voice="mary",
        seed=5,
        temperature=0.2,
        latents="QUJD",
        experimentals=("Half Precision",),
        extra={"k": 1},
    )
    assert GenerationMetadata.from_json(meta.to_json()) == meta
    assert "latents" not in meta.to_dict(include_latents=False)
    empty = GenerationMetadata.from_dict({"schema_version": 1})
    assert empty == GenerationMetadata() and empty.temperature is None and empty.half_precision is None


def test_wrong_types_dropped_and_aliases_read():
    meta = GenerationMetadata.from_dict(
        {
            "schema_version": 1,
            "seed": "abc",
            "temperature": 0.5,
            "cvvp_amount": 0.3,
            "sampler": "P",
            "time": "12.3",
        }
    )
    assert meta.seed is None and meta.temperature == 0.5 and meta.time_taken_s is None
    assert meta.cvvp_weight == 0.3 and meta.diffusion_sampler == "P"
    with pytest.raises(MetadataError):
        GenerationMetadata.from_json("[1, 2]")
    with pytest.raises(MetadataError):
        GenerationMetadata.from_json("{oops")


def test_display_dict():
    shown = GenerationMetadata(time_taken_s=1.23456, latents="QUJD").to_display_dict()
    assert shown["time"] == "1.235" and "latents" not in shown


def test_generate_defaults_round_trip():
    values = GenerateDefaults(
        text="Hi.",
        emotion="Custom",
        custom_emotion="calm",
        seed=0,
        candidates=2,
        half_precision=True,
        cond_free=False,
        diffusion_sampler="DDIM",
    )
    meta = GenerationMetadata.from_generate_defaults(values, seed=987, time_taken_s=3.0, model="m.pth")
    assert meta.seed == 987 and meta.experimentals == ("Half Precision",) and meta.custom_emotion == "calm"
    back = meta.to_generate_defaults()
    assert back == GenerateDefaults(**{**values.__dict__, "seed": 987})


def test_to_generate_defaults_keeps_defaults_for_missing_or_out_of_range():
    meta = GenerationMetadata.from_dict({**MRQ_METADATA, "num_autoregressive_samples": 100000})
    values = meta.to_generate_defaults()
    assert values.num_autoregressive_samples == GenerateDefaults().num_autoregressive_samples
    assert values.text == "Hello there." and values.diffusion_iterations == 80 and values.cond_free
    assert GenerationMetadata().to_generate_defaults() == GenerateDefaults()


def test_embed_and_read_back_with_latents(tmp_path):
    wav = _wav(tmp_path / "a.wav")
    audio_before, _ = sf.read(wav, dtype="int16")
    meta = GenerationMetadata(text="Hello.", voice="mary", seed=3, latents=_latents_b64())
    embed_metadata(wav, meta)
    assert read_metadata(wav) == meta
    audio_after, rate = sf.read(wav, dtype="int16")
    assert rate == 24000 and np.array_equal(audio_before, audio_after)
    state = decode_embedded_latents(read_metadata(wav).latents)
    assert state["autoregressive"].shape == (1, 1024)


def test_sidecar_when_embedding_is_off(tmp_path):
    wav = _wav(tmp_path / "b.wav")
    meta = GenerationMetadata(text="Hello.", time_taken_s=2.5, latents=_latents_b64())
    written = save_metadata(wav, meta, embed=False)
    assert written == sidecar_path(wav) == tmp_path / "b.json"
    raw = json.loads(written.read_text())
    assert "latents" not in raw and raw["time"] == 2.5 and "\t" in written.read_text()
    found = read_metadata(wav)
    assert found is not None and found.text == "Hello." and found.latents is None
    assert read_metadata(written) == found
    assert save_metadata(wav, meta, embed=True) == wav
    assert read_metadata(wav).latents == meta.latents  # the tag wins over the sidecar


def test_plain_and_broken_files_give_none(tmp_path):
    assert read_metadata(_wav(tmp_path / "plain.wav")) is None
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x01not really a wav")
    assert read_metadata(garbage) is None
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert read_metadata(text) is None
    bad_sidecar = _wav(tmp_path / "c.wav")
    sidecar_path(bad_sidecar).write_text("{broken")
    assert read_metadata(bad_sidecar) is None
    with pytest.raises(MetadataError):
        read_metadata(tmp_path / "missing.wav")


def test_embed_into_a_non_audio_file_is_an_app_error(tmp_path):
    text = tmp_path / "x.wav"
    text.write_text("not audio")
    with pytest.raises(MetadataError):
        embed_metadata(text, GenerationMetadata())


def test_latents_decode_accepts_mrq_tuples_and_rejects_junk():
    buf = io.BytesIO()
    torch.save((torch.ones(1, 1024), torch.ones(1, 2048), None, None), buf)
    state = decode_embedded_latents(encode_latents(buf.getvalue()))
    assert isinstance(state, tuple) and state[1].shape == (1, 2048)
    assert decode_latents_bytes(encode_latents(buf.getvalue())) == buf.getvalue()
    with pytest.raises(MetadataError, match="base64"):
        decode_embedded_latents("not base64!!")
    with pytest.raises(MetadataError):
        decode_embedded_latents(encode_latents(b"random bytes, not a torch file"))
    buf = io.BytesIO()
    torch.save(3, buf)
    with pytest.raises(MetadataError, match="does not hold"):
        decode_embedded_latents(encode_latents(buf.getvalue()))


class _Payload:
    """Unpickling this calls Path.write_text(marker, 'pwned'): code execution if ever loaded unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, container):
    marker = tmp_path / "pwned.txt"
    if container == "torch_zip":
        buf = io.BytesIO()
        torch.save({"autoregressive": _Payload(marker)}, buf)
        data = buf.getvalue()
    else:
        data = pickle.dumps({"autoregressive": _Payload(marker)}, protocol=2)
    b64 = base64.b64encode(data).decode("ascii")
    with pytest.raises(UnsafeLatents, match="could run code"):
        decode_embedded_latents(b64)
    with pytest.raises(UnsafeLatents):
        decode_latents_bytes(b64)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it.
    if container == "torch_zip":
        torch.load(io.BytesIO(data), weights_only=False)
    else:
        pickle.loads(data)
    assert marker.read_text() == "pwned"
