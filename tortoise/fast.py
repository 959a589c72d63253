"""Fast mode (TORTOISE_SPEC §13): one sampled AR row, its GPT latents decoded by the HiFi-GAN decoder
conditioned on the voice's AR latent. No ranking, no diffusion, no UnivNet. Whole clips (`generate_fast`)
or a stream of chunks while the AR decodes (`FastStream`).
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tortoise.audio import OUTPUT_SAMPLE_RATE
from tortoise.errors import InvalidInputError
from tortoise.latents import ConditioningLatents
from tortoise.options import GenerationOptions
from tortoise.sampling import make_code_sampler, sample_codes
from tortoise.streaming import StreamDecoder, StreamSettings

if TYPE_CHECKING:
    from tortoise.api import TextToSpeech, TTSResult

AR_SAMPLES_PER_CODE = 1024
# Options the fast pipeline has no use for: it samples one row and has no ranking, diffusion or trim.
# The value each must keep (its default) if given explicitly.
FAST_UNUSED_OPTIONS: dict[str, Any] = {
    "num_autoregressive_samples": 1,
    "sample_batch_size": 0,
    "k": 1,
    "cvvp_amount": 0.0,
    "diffusion_iterations": None,
    "sampler": None,
    "cond_free": None,
    "cond_free_k": None,
    "diffusion_temperature": None,
    "breathing_room": None,
}


def fast_options(preset: str | None, overrides: dict[str, Any]) -> GenerationOptions:
    """Options for fast mode: the preset's sampling values plus overrides that apply.

    Raises:
        InvalidInputError: an option that fast mode cannot honour (diffusion, ranking, candidates) is set.
    """
    refused = sorted(
        name
        for name, value in overrides.items()
        if name in FAST_UNUSED_OPTIONS and value is not None and value != FAST_UNUSED_OPTIONS[name]
    )
    if refused:
        raise InvalidInputError(
            f"Fast mode does not use {', '.join(refused)}: it samples one candidate and decodes it with "
            "the HiFi-GAN decoder (no ranking, no diffusion). Leave these unset or use the standard mode."
        )
    applicable = {k: v for k, v in overrides.items() if k not in FAST_UNUSED_OPTIONS}
    return GenerationOptions.from_preset(preset, **applicable).replace(num_autoregressive_samples=1, k=1)


def hifidecoder(tts: TextToSpeech) -> nn.Module:
    """The TTS's HiFi-GAN decoder, loaded on first use (raises what the loader raises, e.g. offline)."""
    if tts.models.hifidecoder is None:
        if tts.hifi_loader is None:
            raise InvalidInputError("Fast mode needs the HiFi-GAN decoder (hifidecoder.pth); none is set up.")
        tts.models.hifidecoder = tts.hifi_loader().eval().requires_grad_(False).to(tts.plan.storage_device)
    return tts.models.hifidecoder


@dataclass
class _Prepared:
    options: GenerationOptions
    seed: int
    tokens: torch.Tensor
    cond_ar: torch.Tensor  # (1, dim) on the device, in the AR's dtype
    max_mel_tokens: int
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def _prepare(tts, text, voice_samples, conditioning_latents, preset, seed, progress, overrides) -> _Prepared:
    options = fast_options(preset, overrides)
    tokens = tts.encode_text(text)
    decoder = hifidecoder(tts)  # fail early (missing file, offline) before any sampling
    ar = tts.models.autoregressive
    if decoder.cond_channels != ar.model_dim or decoder.in_channels != ar.model_dim:
        raise InvalidInputError(
            f"The HiFi-GAN decoder takes {decoder.in_channels}-wide latents but the AR model makes "
            f"{ar.model_dim}-wide ones; use the decoder made for this AR model."
        )
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    torch.manual_seed(seed)
    random.seed(seed)
    notes: list[str] = []
    max_mel_tokens = options.max_mel_tokens
    if max_mel_tokens > ar.max_mel_tokens - 2:
        max_mel_tokens = ar.max_mel_tokens - 2
        notes.append(f"max_mel_tokens lowered to {max_mel_tokens}, the most this model can generate.")
    t0 = time.perf_counter()
    latents = conditioning_latents
    if latents is None:
        if voice_samples:
            latents = tts.get_conditioning_latents(voice_samples, progress=progress)
        else:
            latents = tts.get_random_conditioning_latents()
    cond_ar = latents.autoregressive.to(tts.plan.device, ar.dtype)
    timings = {"latents": time.perf_counter() - t0}
    return _Prepared(options, seed, tokens.to(tts.plan.device), cond_ar, max_mel_tokens, notes, timings)


def generate_fast(
    tts: TextToSpeech,
    text: str,
    voice_samples: Any = None,
    conditioning_latents: ConditioningLatents | None = None,
    preset: str | None = None,
    seed: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **overrides: Any,
) -> TTSResult:
    """Fast `tts()`: sample one row, run the latent pass over it as it is, decode with HiFi-GAN.

    As upstream's fast tts: no fix of the sampled codes, no calm trim (the stop code's latent is decoded
    too). Arguments as `TextToSpeech.tts`; options that do not apply are refused (see fast_options).

    Returns:
        TTSResult with one waveform (1, samples) at 24 kHz; `codes` holds the sampled row up to its stop.
    """
    from tortoise.api import TTSResult

    p = _prepare(tts, text, voice_samples, conditioning_latents, preset, seed, progress, overrides)
    ar, plan, o = tts.models.autoregressive, tts.plan, p.options
    t0 = time.perf_counter()
    with plan.on_device(ar), torch.inference_mode(), plan.autocast():
        codes = sample_codes(
            ar, p.cond_ar, p.tokens, num_samples=1, batch_size=1, max_mel_tokens=p.max_mel_tokens,
            repetition_penalty=o.repetition_penalty, temperature=o.temperature, top_p=o.top_p, top_k=o.top_k,
            use_kv_mel_offset=o.use_kv_mel_offset, progress=_stage(progress, "autoregressive"), cancel=cancel,
        )
        codes = codes[:, : _length_to_stop(codes[0], ar.stop_mel_token, p.notes)]
        p.timings_s["autoregressive"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        latents = ar(
            p.cond_ar, p.tokens, torch.tensor([p.tokens.shape[1]], device=p.tokens.device), codes,
            torch.tensor([codes.shape[1] * AR_SAMPLES_PER_CODE], device=codes.device),
            return_latent=True, clip_inputs=False,
        ).float()
    p.timings_s["latent_pass"] = time.perf_counter() - t0
    _report(progress, "latent_pass", 1, 1)
    decoder = hifidecoder(tts)
    t0 = time.perf_counter()
    with plan.on_device(decoder, plan.vocoder_device), torch.inference_mode():
        wav = decoder.inference(latents.to(plan.vocoder_device), p.cond_ar.float().to(plan.vocoder_device))
    p.timings_s["decoder"] = time.perf_counter() - t0
    _report(progress, "decoder", 1, 1)
    wav = wav.reshape(1, -1).float().cpu()
    if o.enable_redaction and "[" in text:
        t0 = time.perf_counter()
        wav = tts._redact(wav, text)
        p.timings_s["redaction"] = time.perf_counter() - t0
    return TTSResult(
        [wav], o.replace(max_mel_tokens=p.max_mel_tokens), p.seed, notes=p.notes, timings_s=p.timings_s,
        codes=codes.cpu(),
    )


class DecoderFirst:
    """Turns between the AR thread and the decoder when both compute on the CPU's cores.

    Running them at once oversubscribes the cores (each asks torch for every core), and the first chunk
    then waits on both: with turns, the AR pauses between two steps while a chunk is decoded. On a GPU
    the two overlap instead (`enabled` False): their kernels queue on the device.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._cond = threading.Condition()
        self._decoding = False

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold the cores for one decode; the AR finishes its current step, then waits."""
        if not self.enabled:
            yield
            return
        with self._cond:
            self._decoding = True
        try:
            yield
        finally:
            with self._cond:
                self._decoding = False
                self._cond.notify_all()

    def between_steps(self) -> None:
        """Called by the AR thread after each step: wait while a chunk is being decoded."""
        if self.enabled:
            with self._cond:
                self._cond.wait_for(lambda: not self._decoding)


class FastStream:
    """Audio chunks of one line, produced while the AR decodes. Iterate it once.

    Built by `TextToSpeech.tts_stream`; everything is checked when it is built, so bad input raises there,
    before any audio. The AR runs in a worker thread; the decoder runs in the iterating thread.

    Attributes:
        seed, options, notes: as in TTSResult.
        settings: the StreamSettings in use.
        sample_rate: 24000.
        codes: the codes sampled so far (list of ints), the stop code last once complete.
        is_complete: True once the final chunk was yielded.
        timings_s: "first_chunk" (seconds from the start of iteration to the first chunk) and "total".
    """

    def __init__(self, tts, prepared: _Prepared, settings: StreamSettings, cancel: Callable[[], bool] | None,
                 progress: Callable[[str, int, int], None] | None):
        self._tts, self._p = tts, prepared
        self.seed, self.options, self.notes = prepared.seed, prepared.options, prepared.notes
        self.settings = settings
        self.sample_rate = OUTPUT_SAMPLE_RATE
        self.codes: list[int] = []
        self.is_complete = False
        self.timings_s = dict(prepared.timings_s)
        self._cancel, self._progress = cancel, progress
        self._stop = threading.Event()
        self._started = False
        self._turns = DecoderFirst(tts.plan.kind == "cpu")  # the AR and the decoder share the CPU's cores

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yield (samples,) float32 CPU chunks at 24 kHz; their concatenation is the whole clip.

        Raises:
            GenerationCancelled: the cancel callback said stop (the chunks yielded so far are final).
        """
        if self._started:
            raise RuntimeError("A FastStream can be iterated only once.")
        self._started = True
        items: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._decode_codes, args=(items,), daemon=True, name="fast-ar")
        t0 = time.perf_counter()
        worker.start()
        try:
            yield from self._chunks(items, t0)
        finally:
            self._stop.set()
            worker.join()
            self.timings_s["total"] = time.perf_counter() - t0

    def _chunks(self, items: queue.Queue, t0: float) -> Iterator[torch.Tensor]:
        plan, s = self._tts.plan, self.settings
        decoder = hifidecoder(self._tts)
        with plan.on_device(decoder, plan.vocoder_device):
            stream = StreamDecoder(decoder, self._p.cond_ar.float(), s)
            next_at = s.first_chunk_codes
            stop_code = self._tts.models.autoregressive.stop_mel_token
            while True:
                item = items.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    break
                code, latent = item
                if self.codes and self.codes[-1] == stop_code:
                    continue  # the loop checks for the end every few steps; steps after the stop are masked
                self.codes.append(int(code))
                stream.add(latent.float())
                if len(self.codes) == next_at:
                    next_at += s.chunk_codes
                    with self._turns.decoding():
                        chunk = stream.decode()
                    if chunk is not None:
                        self.timings_s.setdefault("first_chunk", time.perf_counter() - t0)
                        _report(self._progress, "autoregressive", len(self.codes), self._p.max_mel_tokens)
                        yield chunk
            ar = self._tts.models.autoregressive
            if not self.codes or self.codes[-1] != ar.stop_mel_token:
                self.notes.append("The line never produced a stop code; its speech may be cut off.")
            with self._turns.decoding():
                chunk = stream.decode(final=True)
            self.is_complete = True
            self.timings_s.setdefault("first_chunk", time.perf_counter() - t0)
            _report(self._progress, "decoder", 1, 1)
            if chunk is not None:
                yield chunk

    def _step_done(self, items: queue.Queue, code: torch.Tensor, latent: torch.Tensor) -> None:
        items.put((code, latent))
        self._turns.between_steps()

    def _decode_codes(self, items: queue.Queue) -> None:
        """Worker thread: run the shared AR decode loop for one row, pushing (code, latent) per step."""
        tts, p, o = self._tts, self._p, self._p.options
        ar, plan = tts.models.autoregressive, tts.plan

        def cancelled() -> bool:
            return self._stop.is_set() or (self._cancel is not None and bool(self._cancel()))

        sampler = make_code_sampler(
            repetition_penalty=o.repetition_penalty, temperature=o.temperature, top_p=o.top_p, top_k=o.top_k,
            start_token=ar.start_mel_token, cancel=cancelled,
        )
        torch.manual_seed(p.seed)  # the same codes as generate_fast with the same seed and latents
        try:
            with plan.on_device(ar), torch.inference_mode(), plan.autocast():
                ar.inference_codes(
                    p.cond_ar, p.tokens, p.max_mel_tokens, num_return_sequences=1, use_kv_cache=True,
                    use_kv_mel_offset=o.use_kv_mel_offset, next_code=sampler,
                    on_step=lambda codes, latents: self._step_done(items, codes[0], latents[0]),
                )
        except BaseException as e:  # handed to the iterating thread, which raises it
            items.put(e)
        else:
            items.put(None)


def open_stream(
    tts: TextToSpeech,
    text: str,
    voice_samples: Any = None,
    conditioning_latents: ConditioningLatents | None = None,
    preset: str | None = None,
    seed: int | None = None,
    settings: StreamSettings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **overrides: Any,
) -> FastStream:
    """Check everything and return a FastStream (see TextToSpeech.tts_stream)."""
    settings = settings or StreamSettings()
    if overrides.get("enable_redaction", True) and "[" in text:
        raise InvalidInputError(
            "[Bracketed] text cannot be cut out of a stream. Turn streaming off to have it removed."
        )
    p = _prepare(tts, text, voice_samples, conditioning_latents, preset, seed, progress, overrides)
    settings.check(p.max_mel_tokens)
    return FastStream(tts, p, settings, cancel, progress)


def _length_to_stop(row: torch.Tensor, stop_token: int, notes: list[str]) -> int:
    stops = (row == stop_token).nonzero()
    if stops.numel() == 0:
        warnings.warn("The line never produced a stop code; its speech may be cut off.", stacklevel=3)
        notes.append("The line never produced a stop code; its speech may be cut off.")
        return row.shape[0]
    return int(stops[0]) + 1


def _stage(progress, stage):
    return None if progress is None else (lambda done, total: progress(stage, done, total))


def _report(progress, stage, done, total) -> None:
    if progress is not None:
        progress(stage, done, total)


