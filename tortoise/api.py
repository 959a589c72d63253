"""TextToSpeech: the public entry of the TTS core. Text + a voice in, ranked 24 kHz waveforms out.

Everything the official `tts()` does, plus whole-clip latents, three diffusion samplers, a static KV
cache, candidate batching with row retirement, progress/cancel hooks and per-stage devices.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tortoise.audio import OUTPUT_SAMPLE_RATE
from tortoise.device import Backends, DevicePlan, auto_sample_batch_size, check_batch_fits, resolve_device
from tortoise.diffusion import sample as diffusion_sample
from tortoise.errors import InvalidInputError, TextTooLongError
from tortoise.latents import DEFAULT_MAX_CHUNK_S, ConditioningLatents, compute_latents
from tortoise.mel import denormalize_tacotron_mel, load_mel_norms
from tortoise.options import GenerationOptions
from tortoise.precision import dtype_of as _dtype_of
from tortoise.ranking import score_candidates
from tortoise.redaction import split_redacted
from tortoise.sampling import calm_trim_length, fix_autoregressive_output, sample_codes
from tortoise.tokenizer import SPACE_TOKEN_ID, UNK_TOKEN_ID, VoiceBpeTokenizer

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
CancelFn = Callable[[], bool]
STAGES = ("latents", "autoregressive", "ranking", "latent_pass", "diffusion", "vocoder", "redaction")
OFFICIAL_TEXT_TOKEN_LIMIT = 400  # official tts() asserts len(ids) + 1 < 400
AR_SAMPLES_PER_CODE = 1024  # 22.05 kHz samples one AR code stands for


@dataclass
class TTSModels:
    """The networks a TextToSpeech uses. CVVP and the random-latent converters are optional."""

    autoregressive: nn.Module
    diffusion: nn.Module
    clvp: nn.Module
    vocoder: nn.Module
    cvvp: nn.Module | None = None
    rlg_auto: nn.Module | None = None
    rlg_diffuser: nn.Module | None = None
    hifidecoder: nn.Module | None = None  # fast mode's decoder, loaded on first use


@dataclass
class TTSResult:
    """What one `tts()` call produced.

    Attributes:
        waveforms: the k best candidates, best first, each (1, samples) float32 at `sample_rate`.
        options: every setting actually used.
        seed: the seed actually used (give it back to reproduce the result on the same device).
        notes: things the caller should tell the user (e.g. why CVVP was not applied).
        timings_s: wall time per stage in seconds.
        codes: (k, length) fixed AR codes of the returned candidates.
        truncated: per returned candidate, True when it never emitted a stop code (its speech was cut
            at max_mel_tokens).
    """

    waveforms: list[torch.Tensor]
    options: GenerationOptions
    seed: int
    sample_rate: int = OUTPUT_SAMPLE_RATE
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    codes: torch.Tensor | None = None
    truncated: list[bool] = field(default_factory=list)


class TextToSpeech:
    """The TorToiSe pipeline over already-built models.

    Args:
        models: the networks (see TTSModels); moved to the plan's devices here.
        tokenizer: VoiceBpeTokenizer over tokenizer.json.
        mel_norms: (80,) AR mel divisors (mel_norms.pth).
        plan: devices and precision (default: resolve_device("auto")).
        aligner: object with `redact(audio (1, S), text, sample_rate) -> (1, S')` for [bracket] redaction;
            None creates the wav2vec2 aligner lazily on first use.
        cvvp_loader: called once to load CVVP when a CVVP weight is first used and `models.cvvp` is None.
        rlg_loader: called once to load (rlg_auto, rlg_diffuser) for the random voice when they are None.
        hifi_loader: called once to load the fast mode's HiFi-GAN decoder when `models.hifidecoder` is None.
        model_name / model_hash: identify the AR checkpoint (latents caches and metadata are keyed on it).
        model_loaders: name ("autoregressive", "diffusion", "vocoder") -> a function that loads it afresh
            in fp32; used to get the exact fp32 weights back when half precision is switched off.
        backends: hardware probes (free memory); tests pass fakes.
    """

    def __init__(
        self,
        models: TTSModels,
        tokenizer: VoiceBpeTokenizer,
        mel_norms: torch.Tensor,
        plan: DevicePlan | None = None,
        aligner: Any | None = None,
        cvvp_loader: Callable[[], nn.Module] | None = None,
        rlg_loader: Callable[[], tuple[nn.Module, nn.Module]] | None = None,
        model_name: str = "autoregressive",
        model_hash: str = "",
        hifi_loader: Callable[[], nn.Module] | None = None,
        model_loaders: dict[str, Callable[[], nn.Module]] | None = None,
        backends: Backends | None = None,
    ):
        self.models = models
        self.tokenizer = tokenizer
        self.mel_norms = mel_norms.float().cpu()
        self.plan = plan or resolve_device("auto")
        self.aligner = aligner
        self.cvvp_loader = cvvp_loader
        self.rlg_loader = rlg_loader
        self.model_name = model_name
        self.model_hash = model_hash
        self.offline = False  # from_dir sets it: the lazily made aligner then never downloads
        self.hifi_loader = hifi_loader
        self.model_loaders = dict(model_loaders or {})
        self.backends = backends or Backends()
        self._apply_precision()  # before moving: the device then receives the smaller weights
        for name in ("autoregressive", "diffusion", "clvp", "vocoder", "cvvp", "rlg_auto", "rlg_diffuser",
                     "hifidecoder"):
            model = getattr(models, name)
            if model is not None:
                model.eval().requires_grad_(False)
                model.to(self.plan.vocoder_device if name == "vocoder" else self.plan.storage_device)

    # ------------------------------------------------------------------ precision

    def set_half(self, half: bool, *, few_rows: bool = False) -> None:
        """Switch half precision on or off (the app's Half-Precision switch); see tortoise.precision.

        Weights are converted in place (no second copy); switching back to fp32 reloads the exact fp32
        weights through `model_loaders`. On CUDA the decode graphs are captured again right away.
        `few_rows` (fast mode) turns bf16 on also on CPUs without bf16 instructions (DevicePlan.with_half).
        """
        plan = self.plan.with_half(half, few_rows=few_rows)
        if plan == self.plan:
            return
        self.plan = plan
        self._apply_precision()
        if self.plan.kind == "cuda":
            self.warm_up()

    def _apply_precision(self) -> None:
        from tortoise.precision import apply_precision

        apply_precision(self.models, self.plan, self.model_loaders)

    def warm_up(self) -> float:
        """Run every stage once at a tiny size (and capture the decode graphs) so that the first
        generation runs at full speed; returns the seconds it took. See tortoise.precision.warm_up."""
        from tortoise.precision import warm_up

        auto = auto_sample_batch_size(self.plan, self.backends)
        return warm_up(self.models, self.plan, sorted({auto, min(4, auto)}, reverse=True))

    def release(self) -> None:
        """Drop captured graphs and their buffers (call before unloading; the engine does)."""
        from tortoise.models.ar_graphs import release_graphs

        release_graphs(self.models.autoregressive)

    # ------------------------------------------------------------------ construction from files

    @classmethod
    def from_dir(
        cls,
        models_dir: str | Path,
        *,
        device: str = "auto",
        half: bool = False,
        low_vram: bool = False,
        autoregressive_path: str | Path | None = None,
        offline: bool | None = None,
        store: Any | None = None,
        model_configs: dict[str, dict[str, Any]] | None = None,
    ) -> TextToSpeech:
        """Load (downloading on first use) the official models from `models_dir`.

        Args:
            autoregressive_path: a fine-tuned AR checkpoint to use instead of autoregressive.pth.
            offline: never download; missing files raise ModelDownloadError listing them.
            store: a ModelStore to use (tests pass one pointed at a local server).
            model_configs: registry name -> constructor overrides, for checkpoints of other sizes.
        """
        from tortoise import models as registry
        from tortoise.download import INFERENCE_FILES, ModelStore

        overrides = {"autoregressive.pth": autoregressive_path} if autoregressive_path else None
        store = store or ModelStore(models_dir, offline=offline, overrides=overrides)
        paths = store.ensure(INFERENCE_FILES)
        plan = resolve_device(device, half=half, low_vram=low_vram)
        configs = model_configs or {}

        def load(name: str, path: Any) -> nn.Module:
            return registry.load(name, path, **configs.get(name, {}))

        models = TTSModels(
            autoregressive=load("autoregressive", paths["autoregressive.pth"]),
            diffusion=load("diffusion_decoder", paths["diffusion_decoder.pth"]),
            clvp=load("clvp2", paths["clvp2.pth"]),
            vocoder=load("vocoder", paths["vocoder.pth"]),
        )
        loaders = {
            "autoregressive": lambda: load("autoregressive", paths["autoregressive.pth"]),
            "diffusion": lambda: load("diffusion_decoder", paths["diffusion_decoder.pth"]),
            "vocoder": lambda: load("vocoder", paths["vocoder.pth"]),
        }
        ar_path = Path(paths["autoregressive.pth"])
        stat = ar_path.stat()
        # hashing 1.6 GB on every start is slow; size + mtime + name identify a checkpoint well enough
        quick_hash = sha256_of_text(f"{ar_path.name}:{stat.st_size}:{int(stat.st_mtime)}")[:8]
        tts = cls(
            models,
            VoiceBpeTokenizer(paths["tokenizer.json"]),
            load_mel_norms(paths["mel_norms.pth"]),
            plan,
            cvvp_loader=lambda: load("cvvp", store.get("cvvp.pth")),
            rlg_loader=lambda: (load("rlg_auto", store.get("rlg_auto.pth")),
                                load("rlg_diffuser", store.get("rlg_diffuser.pth"))),
            model_name=ar_path.stem,
            model_hash=quick_hash,
            hifi_loader=lambda: load("hifidecoder", store.get("hifidecoder.pth")),
            model_loaders=loaders,
        )
        tts.offline = bool(store.offline) if hasattr(store, "offline") else bool(offline)
        if plan.kind == "cuda":
            tts.warm_up()
        return tts

    # ------------------------------------------------------------------ conditioning

    def get_conditioning_latents(
        self,
        voice_samples: Sequence[torch.Tensor],
        *,
        method: str = "whole",
        max_chunk_s: float = DEFAULT_MAX_CHUNK_S,
        slim: bool = False,
        progress: ProgressFn | None = None,
    ) -> ConditioningLatents:
        """Latents of a voice from its clips ((1, S) at 22.05 kHz); see tortoise.latents.compute_latents."""
        device = self.plan.latents_device
        ar, diff = self.models.autoregressive, self.models.diffusion
        with self.plan.on_device(ar, device), self.plan.on_device(diff, device):
            return compute_latents(
                voice_samples,
                ar,
                diff,
                self.mel_norms,
                method=method,
                max_chunk_s=max_chunk_s,
                slim=slim,
                device=device,
                progress=_stage(progress, "latents"),
            ).to("cpu")

    def get_random_conditioning_latents(
        self, generator: torch.Generator | None = None
    ) -> ConditioningLatents:
        """Latents of a random voice from the RLG models (loaded on first use)."""
        if self.models.rlg_auto is None or self.models.rlg_diffuser is None:
            if self.rlg_loader is None:
                raise InvalidInputError("The random voice needs the rlg_auto/rlg_diffuser models.")
            self.models.rlg_auto, self.models.rlg_diffuser = self.rlg_loader()
        with torch.inference_mode():
            ar = self.models.rlg_auto.cpu().sample(1, generator=generator)
            diff = self.models.rlg_diffuser.cpu().sample(1, generator=generator)
        return ConditioningLatents(ar.float(), diff.float(), None, "random")

    # ------------------------------------------------------------------ text

    @property
    def text_token_limit(self) -> int:
        """The most text tokens (after cleaning) one `tts()` call accepts."""
        return min(OFFICIAL_TEXT_TOKEN_LIMIT, self.models.autoregressive.max_text_tokens - 2) - 2

    def count_text_tokens(self, text: str) -> int:
        """Length of `text` in tokens after cleaning, as `encode_text` measures it."""
        return len(self.tokenizer.encode(text))

    def encode_text(self, text: str) -> torch.Tensor:
        """(1, T + 1) text ids with the trailing stop 0 that tts() appends.

        Raises:
            InvalidInputError: empty text, unbalanced brackets, or nothing left to say outside brackets.
            TextTooLongError: more tokens than one pass allows (the message says how many and the limit).
        """
        if not text or not text.strip():
            raise InvalidInputError("The text is empty. Type something to say.")
        check_brackets(text)
        ids = self.tokenizer.encode(text)
        if not any(i not in (SPACE_TOKEN_ID, UNK_TOKEN_ID) for i in ids):
            raise InvalidInputError(
                "Nothing in the text can be spoken: after cleaning it has no letters or digits the model "
                "knows (emoji and symbols are dropped). Type words to say."
            )
        if len(ids) > self.text_token_limit:
            raise TextTooLongError(
                f"The text is {len(ids)} tokens long; one pass allows {self.text_token_limit}. Split it "
                "into shorter lines (use a line delimiter) or let the app split it at sentence boundaries."
            )
        return torch.tensor([ids + [0]], dtype=torch.long)

    # ------------------------------------------------------------------ generation

    def tts(
        self,
        text: str,
        voice_samples: Sequence[torch.Tensor] | None = None,
        conditioning_latents: ConditioningLatents | None = None,
        preset: str | None = None,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        **overrides: Any,
    ) -> TTSResult:
        """Speak `text` in a voice.

        Args:
            text: what to say; [bracketed] parts shape the delivery and are cut from the audio.
            voice_samples: clips (1, S) at 22.05 kHz; used when conditioning_latents is None.
            conditioning_latents: precomputed latents (e.g. the app's cache); neither -> random voice.
            preset: ultra_fast, fast, standard or high_quality; explicit overrides win.
            seed: None draws one; it is returned in the result.
            progress: (stage, done, total) callback, stages as in STAGES.
            cancel: polled during long loops; True raises GenerationCancelled.
            **overrides: GenerationOptions fields.
        """
        options = GenerationOptions.from_preset(preset, **overrides)
        text_tokens = self.encode_text(text)
        notes: list[str] = []
        timings: dict[str, float] = {}
        seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
        torch.manual_seed(seed)
        random.seed(seed)
        ar = self.models.autoregressive
        max_mel_tokens = options.max_mel_tokens
        if max_mel_tokens > ar.max_mel_tokens - 2:
            max_mel_tokens = ar.max_mel_tokens - 2
            notes.append(f"max_mel_tokens lowered to {max_mel_tokens}, the most this model can generate.")

        t0 = time.perf_counter()
        latents = self._resolve_latents(voice_samples, conditioning_latents, progress)
        timings["latents"] = time.perf_counter() - t0

        device = self.plan.device
        cond_ar = latents.autoregressive.to(device, ar.dtype)
        tokens = text_tokens.to(device)
        t0 = time.perf_counter()
        codes = self._sample(cond_ar, tokens, options, max_mel_tokens, notes, progress, cancel)
        timings["autoregressive"] = time.perf_counter() - t0
        fixed = fix_autoregressive_output(codes, ar.stop_mel_token)

        t0 = time.perf_counter()
        best = self._rank(fixed, tokens, latents, options, notes, device)
        timings["ranking"] = time.perf_counter() - t0
        _report(progress, "ranking", 1, 1)

        best_codes = fixed[best]
        truncated = [not bool((codes[i] == ar.stop_mel_token).any()) for i in best.tolist()]
        notes += _truncation_notes(truncated, max_mel_tokens)
        trims = [calm_trim_length(row, options.breathing_room) for row in best_codes]
        t0 = time.perf_counter()
        best_latents = self._latent_pass(cond_ar, tokens, best_codes[:, : max(trims)])
        timings["latent_pass"] = time.perf_counter() - t0
        _report(progress, "latent_pass", 1, 1)

        waveforms = []
        timings["diffusion"] = timings["vocoder"] = 0.0
        for i, trim in enumerate(trims):
            waveforms.append(
                self._decode(
                    best_latents[i : i + 1, :trim], latents, options, progress, cancel, timings, i, len(trims)
                )
            )
        if options.enable_redaction and "[" in text:
            t0 = time.perf_counter()
            waveforms = [self._redact(w, text) for w in waveforms]
            timings["redaction"] = time.perf_counter() - t0
        return TTSResult(
            waveforms,
            options.replace(max_mel_tokens=max_mel_tokens),
            seed,
            notes=notes,
            timings_s=timings,
            codes=best_codes.cpu(),
            truncated=truncated,
        )

    def _resolve_latents(
        self,
        voice_samples: Sequence[torch.Tensor] | None,
        conditioning_latents: ConditioningLatents | None,
        progress: ProgressFn | None,
    ) -> ConditioningLatents:
        """The given latents, else latents of the clips, else a random voice."""
        if conditioning_latents is not None:
            return conditioning_latents
        if voice_samples:
            return self.get_conditioning_latents(voice_samples, progress=progress)
        return self.get_random_conditioning_latents()

    def _sample(self, cond_ar, tokens, options, max_mel_tokens, notes, progress, cancel) -> torch.Tensor:
        """Every candidate row of AR codes, batch by batch, after the memory check (the AR stage)."""
        ar = self.models.autoregressive
        batch = options.sample_batch_size or auto_sample_batch_size(self.plan, self.backends)
        samples = options.num_autoregressive_samples
        if samples > batch and samples % batch:
            notes.append(
                f"All {samples} samples were drawn: {samples // batch} batch(es) of {batch}, then one of "
                f"{samples % batch} (official TorToiSe would have dropped those {samples % batch})."
            )
        self._check_decode_memory(ar, tokens, min(batch, samples), max_mel_tokens)
        with self.plan.on_device(ar), torch.inference_mode(), self._autocast_for(ar):
            return sample_codes(
                ar,
                cond_ar,
                tokens,
                num_samples=samples,
                batch_size=batch,
                max_mel_tokens=max_mel_tokens,
                repetition_penalty=options.repetition_penalty,
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k,
                use_kv_mel_offset=options.use_kv_mel_offset,
                progress=_stage(progress, "autoregressive"),
                cancel=cancel,
                check_every=self.plan.decode_check_every,
            )

    def _latent_pass(self, cond_ar, tokens, kept: torch.Tensor) -> torch.Tensor:
        """GPT latents (k, frames, dim) of the kept codes (k, frames), float32.

        The GPT is causal: latents up to the longest calm trim equal those of the official full pass.
        """
        ar, device = self.models.autoregressive, self.plan.device
        k = kept.shape[0]
        with self.plan.on_device(ar), torch.inference_mode(), self._autocast_for(ar):
            latents = ar(
                cond_ar.expand(k, -1),
                tokens.expand(k, -1),
                torch.full((k,), tokens.shape[1], device=device),
                kept,
                torch.full((k,), kept.shape[1] * AR_SAMPLES_PER_CODE, device=device),
                return_latent=True,
                clip_inputs=False,
            ).float()
            self.plan.synchronize()  # stage times on an asynchronous device
        return latents

    def tts_fast(self, text: str, **kwargs: Any) -> TTSResult:
        """Fast mode: one AR sample decoded by the HiFi-GAN decoder (no ranking, no diffusion).

        Takes `tts`'s arguments; options that do not apply raise InvalidInputError. See
        tortoise.fast.generate_fast.
        """
        from tortoise.fast import generate_fast

        return generate_fast(self, text, **kwargs)

    def tts_stream(self, text: str, **kwargs: Any) -> Any:
        """Fast mode as a stream: returns a FastStream that yields 24 kHz chunks while the AR decodes.

        Takes `tts`'s arguments plus `settings` (tortoise.streaming.StreamSettings). See
        tortoise.fast.open_stream.
        """
        from tortoise.fast import open_stream

        return open_stream(self, text, **kwargs)

    def _autocast_for(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """Autocast for an fp32 model in half precision; a model stored in half needs none."""
        if _dtype_of(model) != torch.float32:
            return contextlib.nullcontext()
        return self.plan.autocast()

    def _check_decode_memory(self, ar, tokens, rows: int, max_mel_tokens: int) -> None:
        """Refuse a sample batch that cannot fit, before decoding (InvalidInputError with the estimate)."""
        runner = getattr(ar, "_graph_runner", None)
        if runner is not None and rows in runner.states:
            return  # the buffers of this batch size exist already
        per_row, fixed = ar.decode_memory_bytes(tokens.shape[1] + 3, max_mel_tokens, ar.cuda_graphs)
        if self.plan.low_vram:  # the weights move to the device for the stage as well
            fixed += sum(p.numel() * p.element_size() for p in ar.parameters())
        check_batch_fits(self.plan, rows, per_row, fixed, self.backends)

    def _rank(self, fixed, tokens, latents, options, notes, device) -> torch.Tensor:
        k = min(options.k, fixed.shape[0])
        cvvp_amount = options.cvvp_amount
        cvvp = None
        if cvvp_amount > 0:
            if latents.ar_mels is None:
                notes.append(
                    "CVVP weight ignored: these latents were computed slim (no clip mels). "
                    "Recompute the voice latents with 'Slimmer Computed Latents' off."
                )
                cvvp_amount = 0.0
            else:
                cvvp = self._cvvp()
                if cvvp is None:
                    notes.append("CVVP weight ignored: the CVVP model is not available.")
                    cvvp_amount = 0.0
        if fixed.shape[0] == k and cvvp_amount == 0 and k == 1:
            return torch.arange(k)  # one candidate: nothing to rank
        clvp = self.models.clvp
        with self.plan.on_device(clvp), torch.inference_mode(), self.plan.autocast():
            if cvvp is not None:
                with self.plan.on_device(cvvp):
                    scores = score_candidates(
                        fixed.to(device),
                        tokens,
                        clvp,
                        cvvp=cvvp,
                        ar_mels=latents.ar_mels.to(device),
                        cvvp_amount=cvvp_amount,
                    )
            else:
                scores = score_candidates(fixed.to(device), tokens, clvp)
        return torch.topk(scores.float().cpu(), k).indices

    def _cvvp(self) -> nn.Module | None:
        if self.models.cvvp is None and self.cvvp_loader is not None:
            self.models.cvvp = self.cvvp_loader().eval().requires_grad_(False).to(self.plan.storage_device)
        return self.models.cvvp

    def _decode(
        self, codes_latents, latents, options, progress, cancel, timings, index, count
    ) -> torch.Tensor:
        """Diffusion then vocoder for one candidate; returns (1, S) float32 on the CPU."""
        diffusion, vocoder = self.models.diffusion, self.models.vocoder
        device = self.plan.device
        length = codes_latents.shape[1]
        frames = length * 4 * OUTPUT_SAMPLE_RATE // 22050  # AR codes are 1024 samples at 22.05 kHz
        t0 = time.perf_counter()
        with self.plan.on_device(diffusion), torch.inference_mode():
            embeddings = diffusion.timestep_independent(
                codes_latents.to(device), latents.diffusion.to(device), frames
            )

            def model_fn(x, t, conditioning_free=False):
                return diffusion(
                    x, t, precomputed_aligned_embeddings=embeddings, conditioning_free=conditioning_free
                ).float()

            def on_step(done, total):
                _report(progress, "diffusion", index * total + done, count * total)

            mel = diffusion_sample(
                model_fn,
                (1, 100, frames),
                steps=options.diffusion_iterations,
                sampler=options.sampler,
                cond_free=options.cond_free,
                cond_free_k=options.cond_free_k,
                temperature=options.diffusion_temperature,
                device=device,
                progress=on_step,
                cancel=cancel,
                batch_guidance=True,
            )
            mel = denormalize_tacotron_mel(mel)[:, :, :frames]
            self.plan.synchronize()
        timings["diffusion"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        with self.plan.on_device(vocoder, self.plan.vocoder_device), torch.inference_mode():
            wav = vocoder.inference(mel.to(self.plan.vocoder_device, _dtype_of(vocoder)))
        timings["vocoder"] += time.perf_counter() - t0
        _report(progress, "vocoder", index + 1, count)
        return wav.reshape(1, -1).float().cpu()

    def _redact(self, wav: torch.Tensor, text: str) -> torch.Tensor:
        return self.redact(wav, text)

    def redact(self, wav: torch.Tensor, text: str) -> torch.Tensor:
        """Cut the [bracketed] parts of `text` from `wav` ((1, S) at 24 kHz) with the aligner.

        Raises:
            ModelDownloadError / TortoiseError: the aligner cannot be loaded.
        """
        return self.load_aligner().redact(wav, text, OUTPUT_SAMPLE_RATE)

    def load_aligner(self) -> Any:
        """The [bracket] aligner, loaded now (so a run can find out before sampling that it is missing).

        Raises:
            ModelDownloadError / TortoiseError: the wav2vec2 model cannot be loaded; the message says
                how to get it or how to turn redaction off.
        """
        if self.aligner is None:
            from tortoise.redaction import Wav2VecAligner

            self.aligner = Wav2VecAligner(
                device=str(self.plan.latents_device), local_files_only=self.offline,
                low_vram=self.plan.low_vram,
            )
        load = getattr(self.aligner, "load", None)
        if load is not None:
            load()
        return self.aligner


def _truncation_notes(truncated: list[bool], max_mel_tokens: int) -> list[str]:
    """A note naming the kept candidates that never emitted a stop code (speech cut off at the limit)."""
    if not any(truncated):
        return []
    cut = ", ".join(str(n + 1) for n, flag in enumerate(truncated) if flag)
    seconds = max_mel_tokens * AR_SAMPLES_PER_CODE / 22050
    return [
        f"Candidate {cut} never emitted a stop code, so its speech was cut off at the maximum "
        f"length ({max_mel_tokens} codes, about {seconds:.0f} s). Use a shorter line."
    ]


def check_brackets(text: str) -> None:
    """Raise InvalidInputError for unbalanced or nested brackets, or text that is only brackets."""
    spoken, kept = split_redacted(text)
    if "[" in text and not any(spoken[first : last + 1].strip() for first, last in kept):
        raise InvalidInputError(
            "Everything is inside [brackets], so nothing would be spoken. Add text outside them."
        )


def sha256_of_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _stage(progress: ProgressFn | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _report(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
