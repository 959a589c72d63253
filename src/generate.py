"""Generation service: GenerateRequest -> lines x candidates -> clips (+ combined.wav) with
metadata in `results/<voice>/<run>/`, optional VoiceFixer pass, non-final clean-up; returns a
GenerateResult. The global pronunciation lexicon respells what TorToiSe hears, and inline markup
(`[pause 0.8s]`, `{speed 0.9}...{/speed}`) times the joined audio.

A run either completes or leaves nothing behind: on Stop or an error its folder is removed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from src.audio_ops import join_with_pauses, non_final_outputs, postprocess_output
from src.engine import TTSEngine
from src.errors import InvalidInput, MetadataError, SettingsError
from src.lexicon import Lexicon, LexiconError, build_lexicon, global_lexicon_path, read_lexicon_rows
from src.markup import has_markup, parse_markup, stretch
from src.metadata import GenerationMetadata, encode_latents, save_metadata
from src.paths import SPECIAL_VOICES, AppPaths
from src.preflight import (
    BYTES_PER_SAMPLE,
    DiskUsage,
    check_aligner,
    check_disk_space,
    check_ffmpeg,
    estimate_output_bytes,
    needs_aligner,
)
from src.prompting import (
    PreparedPrompts,
    check_control_characters,
    emotion_prefix,
    normalize_delimiter,
    prepare_prompts,
    resolve_seed,
)
from src.results import (
    clip_filename,
    combined_filename,
    create_run,
    delete_clips,
    save_clip,
    write_input_file,
)
from src.settings import (
    AppSettings,
    GenerateDefaults,
    save_generate_defaults,
    update_setting,
)
from src.voices import VoiceConditioning, VoiceLibrary
from tortoise import (
    OUTPUT_SAMPLE_RATE,
    VOICE_SAMPLE_RATE,
    GenerationOptions,
    cuda_device_count,
    normalize_sampler_name,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]  # (fraction 0..1, what is happening)

# Share of one line's progress bar per TorToiSe stage: (start, end). Diffusion and AR dominate.
STAGE_SPANS = {
    "latents": (0.0, 0.0),
    "autoregressive": (0.0, 0.45),
    "ranking": (0.45, 0.5),
    "latent_pass": (0.5, 0.52),
    "diffusion": (0.52, 0.95),
    "vocoder": (0.95, 0.99),
    "redaction": (0.99, 1.0),
}
STAGE_LABELS = {
    "latents": "computing voice latents",
    "autoregressive": "sampling speech tokens",
    "ranking": "ranking candidates",
    "latent_pass": "preparing the best candidates",
    "diffusion": "diffusion",
    "vocoder": "vocoder",
    "redaction": "cutting [bracketed] words",
}
VOICE_SHARE = 0.05  # progress bar share of loading the model and the voice latents
SAVE_SHARE = 0.05  # ... and of joining, post-processing and saving
DEFAULT_MAX_MEL_TOKENS = GenerationOptions().max_mel_tokens


@dataclass(frozen=True)
class GenerateRequest(GenerateDefaults):
    """Everything one Run click sends: the Generate tab's values plus the microphone recording.

    Field names equal the UI components' keys: the tab builds it with `GenerateRequest(**values)`.
    """

    mic_audio: str | None = None

    def defaults(self) -> GenerateDefaults:
        """The values to persist in config/generate.json (no recording)."""
        names = [f.name for f in dataclasses.fields(GenerateDefaults)]
        return GenerateDefaults(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class GenerateResult:
    """What a run produced.

    Attributes:
        run_dir: `results/<voice>/<run>/`.
        files: the final clips, candidate order (combined clips for multi-line runs).
        seed: the seed actually used (also in each file's metadata).
        time_s: wall time of the whole run, in seconds.
        notes: things to tell the user (skipped clips or lines, ignored settings, no VoiceFixer).
        lines: the lines generated, without emotion prefixes.
        sample: the reference audio used, (1, samples) at `sample_rate`, or None (random voice).
    """

    run_dir: Path
    files: tuple[Path, ...]
    seed: int
    time_s: float
    notes: tuple[str, ...]
    lines: tuple[str, ...]
    sample: torch.Tensor | None = None
    sample_rate: int = VOICE_SAMPLE_RATE


class VoiceFixerRunner:
    """Optional VoiceFixer post-pass; the package is imported on first use only."""

    def __init__(self) -> None:
        self._model: Any | None = None

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("voicefixer") is not None

    def fix(self, source: Path, target: Path, *, use_cuda: bool) -> Path:
        """Restore `source` into `target` (VoiceFixer writes 44.1 kHz)."""
        if self._model is None:
            from voicefixer import VoiceFixer  # optional dependency: imported lazily

            self._model = VoiceFixer()
        cuda = bool(use_cuda and cuda_device_count() > 0)
        self._model.restore(input=str(source), output=str(target), cuda=cuda, mode=0)
        return target

    def unload(self) -> None:
        self._model = None


def check_request(request: GenerateRequest) -> GenerateRequest:
    """The request with every value type-checked and range-checked, ints made ints.

    Raises:
        InvalidInput / SettingsError: a plain message naming the control ("Please provide text.").
    """
    if not request.text or not request.text.strip():
        raise InvalidInput("Please provide text: type what to say in the Prompt box.")
    if not request.voice or not str(request.voice).strip():
        raise InvalidInput("Please provide a voice: pick one in the Voice list.")
    checked: GenerateDefaults = GenerateDefaults()
    for f in dataclasses.fields(GenerateDefaults):
        checked = update_setting(checked, f.name, getattr(request, f.name))
    if checked.candidates > checked.num_autoregressive_samples:
        raise SettingsError(
            f"Candidates ({checked.candidates}) cannot be more than Samples "
            f"({checked.num_autoregressive_samples}); raise Samples or lower Candidates."
        )
    values = dataclasses.asdict(checked)
    values["voice"] = checked.voice.strip()
    return GenerateRequest(**values, mic_audio=request.mic_audio or None)


class Generator:
    """Runs generations and voice-latents jobs for the Generate tab and the API.

    Args:
        paths: the installation's folders.
        engine: the TTSEngine (lock, cancel flag, model).
        voices: the VoiceLibrary.
        settings: returns the current AppSettings (read at each run, so Settings changes apply).
        voicefixer: the VoiceFixer runner (default: a lazy one).
        disk_usage: how free space is measured (shutil.disk_usage; tests pass a small disk).
    """

    def __init__(
        self,
        paths: AppPaths,
        engine: TTSEngine,
        voices: VoiceLibrary,
        settings: Callable[[], AppSettings],
        voicefixer: VoiceFixerRunner | None = None,
        disk_usage: DiskUsage = shutil.disk_usage,
    ) -> None:
        self.paths = paths
        self.engine = engine
        self.voices = voices
        self.settings = settings
        self.voicefixer = voicefixer or VoiceFixerRunner()
        self.disk_usage = disk_usage

    def compute_latents(
        self, voice: str, voice_chunks: int = 0, progress: ProgressFn | None = None
    ) -> VoiceConditioning:
        """(Re)Compute Voice Latents: recompute and cache the latents of a voice folder or blend.

        Raises:
            InvalidInput: `random` or `microphone` (they have no folder to cache into), a bad name.
            VoiceNotFound / VoiceUnusable: no such voice or no usable clip.
        """
        if voice in SPECIAL_VOICES:
            raise InvalidInput(
                f"'{voice}' has no voice folder to compute latents for; pick a voice from voices/."
            )
        settings = self.settings()
        with (
            self.engine.job() as tts,
            self.engine.latents_on_cpu(tts, settings.force_cpu_for_conditioning_latents),
        ):
            return self.voices.conditioning(
                voice,
                tts,
                voice_chunks=int(voice_chunks or 0),
                slim=settings.slim_latents,
                max_chunk_s=settings.latents_max_chunk_size,
                force=True,
                progress=latents_progress(progress),
            )

    def generate(
        self, request: GenerateRequest, progress: ProgressFn | None = None, *, lexicon: Lexicon | None = None
    ) -> GenerateResult:
        """Generate every line of the prompt with every candidate and save the clips.

        Args:
            request: the Generate tab's values; its text may hold inline markup (`src.markup`).
            progress: (fraction 0..1, message) callback.
            lexicon: respells what TorToiSe hears; None reads the global one (`config/lexicon.json`).

        Raises:
            InvalidInput / SettingsError: bad values (empty prompt, no voice, ranges).
            MarkupError / LexiconError: bad markup, or a lexicon file with bad entries (InvalidInput).
            VoiceNotFound / VoiceUnusable: the voice cannot be used.
            GenerationCancelled: Stop was pressed; nothing is left on disk.
            TortoiseError: a line is too long, the models cannot load, ...
        """
        request = check_request(request)
        if request.generation_mode == "Fast":
            from src.fast_generate import FastGenerator  # imported here: it builds on this module

            return FastGenerator(self).generate(request, progress, lexicon=lexicon)
        report = progress or (lambda fraction, text: None)
        # the cheap checks first, before waiting for the engine or loading anything
        check_text(request)
        lexicon, lexicon_notes = (lexicon, ()) if lexicon is not None else self.read_lexicon()
        seed = resolve_seed(request.seed)
        settings = self.settings()
        started = time.perf_counter()
        report(0.0, "Loading the model")
        with self.engine.job(half=request.half_precision, on_wait=_wait_progress(report)) as tts:
            prompts = _prompts_for(tts, request, lexicon)
            notes = [*lexicon_notes, *split_notes(request, prompts.lines, prompts.auto_split)]
            self._preflight(tts, request, prompts, settings, notes, report)
            report(0.01, "Preparing the voice")
            with self.engine.latents_on_cpu(tts, settings.force_cpu_for_conditioning_latents):
                voice = self.voices.conditioning(
                    request.voice,
                    tts,
                    voice_chunks=request.voice_chunks,
                    slim=settings.slim_latents,
                    max_chunk_s=settings.latents_max_chunk_size,
                    mic_audio=request.mic_audio,
                    seed=seed,
                    progress=latents_progress(report),
                )
            notes.extend(voice.notes)
            self.engine.check_cancelled()
            run = RunState(
                tts, create_run(self.paths, request.voice).run_dir, request, prompts, voice, seed,
                settings, started, report, notes,
            )  # fmt: skip
            try:
                files = self._run_lines(run)
            except BaseException:
                shutil.rmtree(run.run_dir, ignore_errors=True)
                raise
        elapsed = time.perf_counter() - started
        save_generate_defaults(self.paths.generate_file, request.defaults())
        report(1.0, "Done")
        log.info("Generation took %.3f s, saved to %s", elapsed, run.run_dir)
        return GenerateResult(
            run.run_dir, tuple(files), seed, elapsed, tuple(dict.fromkeys(notes)), prompts.lines,
            voice.sample,
        )  # fmt: skip

    def read_lexicon(self) -> tuple[Lexicon, tuple[str, ...]]:
        """The global pronunciation lexicon, read afresh (it is a small file), and notes on reading it.

        A missing file is an empty lexicon; an unreadable one is set aside as `lexicon.json.bak` (a note).

        Raises:
            LexiconError: the file holds entries that cannot be used; nothing has rendered yet.
        """
        path = global_lexicon_path(self.paths.config_dir)
        loaded = read_lexicon_rows(path)
        try:
            return build_lexicon(loaded.rows), loaded.warnings
        except LexiconError as error:
            raise LexiconError(
                f"{error.message}\nFix it in the Lexicon & Preview tab (saved in {path}), then run again."
            ) from error

    def _preflight(
        self, tts: Any, request: GenerateRequest, prompts: PreparedPrompts, settings: AppSettings,
        notes: list[str], report: ProgressFn,
    ) -> None:  # fmt: skip
        """Everything the run will need, checked before any sampling (the models are loaded by now).

        Raises:
            TortoiseError: a line is too long or has nothing to say.
            MissingRequirement: the aligner, ffmpeg or disk space is missing.
        """
        for prompt in prompts.prompts:
            tts.encode_text(prompt)  # a too-long line fails now, before any work
        if request.enable_redaction and needs_aligner(prompts.prompts):
            report(0.005, "Loading the [bracket] aligner (downloaded once, about 1.2 GB)")
            check_aligner(tts, request.emotion)
        if request.voice not in SPECIAL_VOICES:
            for part in self.voices.blend_parts(request.voice) or [request.voice]:
                note = check_ffmpeg(self.paths.root, self.voices.clip_files(part), label=f"voice '{part}'")
                if note:
                    notes.append(note)
        elif request.mic_audio:
            check_ffmpeg(self.paths.root, [Path(request.mic_audio)], label="the microphone recording")
        max_mel_tokens = int(self.engine.default_options.get("max_mel_tokens", DEFAULT_MAX_MEL_TOKENS))
        rate = settings.output_sample_rate or OUTPUT_SAMPLE_RATE
        needed = estimate_output_bytes(len(prompts.lines), request.candidates, rate, max_mel_tokens)
        # {speed} spans lengthen lines by up to 1/speed; [pause]s add silence to the joined clips
        pause_bytes = (prompts.pause_before_s + sum(prompts.pauses_after_s)) * rate * BYTES_PER_SAMPLE
        needed = int(needed / min(prompts.speeds) + pause_bytes * request.candidates)
        check_disk_space(self.paths.results_dir, needed, self.disk_usage)

    # ------------------------------------------------------------------ one run

    def _run_lines(self, run: RunState) -> list[Path]:
        """Generate, save, join, fix and prune; returns the final files (the caller cleans up)."""
        request, prompts = run.request, run.prompts
        lines = len(prompts.lines)
        options = self.options_for(request, run.settings)
        written: list[Path] = []
        waves: list[list[torch.Tensor]] = []  # [line][candidate] -> (1, samples) at 24 kHz
        for index, prompt in enumerate(prompts.prompts):
            line_start = time.perf_counter()
            result = run.tts.tts(
                prompt, conditioning_latents=run.voice.latents, seed=run.seed,
                cancel=self.engine.is_cancelled, progress=_line_progress(run.report, index, lines),
                **options,
            )  # fmt: skip
            where = f"Line {index + 1}: " if lines > 1 else ""
            run.notes.extend(where + note for note in result.notes)
            # {speed} spans are stretched after the vocoder and after cutting [brackets], since the
            # aligner matches the prompt to the audio as TorToiSe spoke it
            waves.append([
                stretch(self._redact(run, w.reshape(1, -1), prompt, where), prompts.speeds[index])
                for w in result.waveforms
            ])  # fmt: skip
            seconds = time.perf_counter() - line_start
            for candidate, wav in enumerate(waves[-1]):
                name = clip_filename(index, candidate, lines=lines, candidates=request.candidates)
                written.append(run.save(name, wav, prompts.marked_line(index), seconds))
            self.engine.check_cancelled()

        run.report(1.0 - SAVE_SHARE, "Saving")
        finals = list(written)
        final_text = prompts.marked_line(0)
        if lines > 1 or prompts.has_pauses:
            final_text = request.text.strip()
            finals = []
            for candidate in range(len(waves[0])):
                joined = join_with_pauses([line[candidate] for line in waves], OUTPUT_SAMPLE_RATE,
                                          prompts.pauses_after_s, prompts.pause_before_s)  # fmt: skip
                name = combined_filename(candidate, candidates=request.candidates)
                finals.append(run.save(name, joined, final_text, run.elapsed_s()))
            written.extend(finals)
        finals = self._voicefixer(run, finals, final_text, written)
        self.engine.check_cancelled()
        prune = run.settings.delete_non_final_output
        delete_clips(non_final_outputs(written, finals, delete_non_final=prune))
        summary = run.metadata(request.text.strip(), run.elapsed_s()).to_dict(include_latents=False)
        if run.notes:
            summary["notes"] = list(dict.fromkeys(run.notes))  # what was skipped and why, with the result
        write_input_file(run.run_dir, summary)
        return finals

    def options_for(self, request: GenerateRequest, settings: AppSettings) -> dict[str, Any]:
        """The request's knobs under TorToiSe's names (GenerationOptions fields)."""
        batch = settings.sample_batch_size
        return {
            **self.engine.default_options,
            "num_autoregressive_samples": request.num_autoregressive_samples,
            "diffusion_iterations": request.diffusion_iterations,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "length_penalty": request.length_penalty,
            "repetition_penalty": request.repetition_penalty,
            "cvvp_amount": request.cvvp_weight,
            "k": request.candidates,
            "sampler": normalize_sampler_name(request.diffusion_sampler),
            "cond_free": request.cond_free,
            "cond_free_k": request.cond_free_k,
            "diffusion_temperature": request.diffusion_temperature,
            "breathing_room": request.breathing_room,
            "sample_batch_size": min(batch, request.num_autoregressive_samples) if batch else 0,
            # the Generator cuts [brackets] itself, so a failing aligner cannot lose the audio
            "enable_redaction": False,
        }

    def _redact(self, run: RunState, wav: torch.Tensor, prompt: str, where: str) -> torch.Tensor:
        return cut_brackets(run.tts, wav, prompt, run.request.enable_redaction, run.notes, where)

    def _voicefixer(
        self, run: RunState, finals: list[Path], text: str, written: list[Path]
    ) -> list[Path]:
        """With the setting on, replace each final clip by its `_fixed.wav` restoration."""
        if not run.settings.voice_fixer:
            return finals
        if not self.voicefixer.is_available():
            run.notes.append(
                "VoiceFixer is not installed, so it was skipped. Install it with "
                "'pip install voicefixer' or turn 'Use Voice Fixer' off in Settings."
            )
            return finals
        fixed_files = []
        for path in finals:
            self.engine.check_cancelled()
            target = path.with_name(f"{path.stem}_fixed.wav")
            try:
                fixed = self.voicefixer.fix(path, target, use_cuda=run.settings.voice_fixer_use_cuda)
            except Exception as error:  # boundary: keep the unprocessed clip when VoiceFixer fails
                log.exception("VoiceFixer failed on %s", path)
                target.unlink(missing_ok=True)
                run.notes.append(
                    f"VoiceFixer failed on {path.name} ({error}), so the clip was kept without it."
                )
                fixed_files.append(path)
                continue
            run.tag(fixed, text)
            written.append(fixed)
            fixed_files.append(fixed)
        return fixed_files


def cut_brackets(
    tts: Any, wav: torch.Tensor, prompt: str, enabled: bool, notes: list[str], where: str = ""
) -> torch.Tensor:
    """Cut the [bracketed] words of `prompt` from a finished clip (the Generate tab and project takes:
    TorToiSe is asked not to, so that a failing aligner cannot lose the audio).

    Args:
        tts: the TextToSpeech that made the clip (its `redact` runs the aligner).
        wav: the clip, any shape holding one channel at 24 kHz.
        enabled: the request's Cut [Bracketed] Words.
        notes: on failure a note is added here ("where" prefixes it) and the clip is kept whole.

    Returns:
        (1, samples) float32 on the CPU.
    """
    wav = wav.detach().float().cpu().reshape(1, -1)
    redact = getattr(tts, "redact", None)
    if not enabled or redact is None or "[" not in prompt:
        return wav
    try:
        return redact(wav, prompt).detach().float().cpu().reshape(1, -1)
    except Exception as error:  # boundary: the finished audio must survive a post-processing failure
        log.exception("Redaction failed; keeping the clip uncut")
        notes.append(
            f"{where}The [bracketed] words could not be cut from the audio ({error}), so the clip "
            "was kept without redaction and they are audible."
        )
        return wav


@dataclass
class RunState:
    """The state of one generation while it runs, and how its clips are tagged and saved (shared by the
    standard generator here and the fast one in src/fast_generate.py)."""

    tts: Any
    run_dir: Path
    request: GenerateRequest
    prompts: PreparedPrompts
    voice: VoiceConditioning
    seed: int
    settings: AppSettings
    started: float
    report: ProgressFn
    notes: list[str]
    latents_b64: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.voice.embed_latents and self.settings.embed_output_metadata:
            self.latents_b64 = encode_latents(self.voice.latents.to_bytes())

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def metadata(self, text: str, seconds: float) -> GenerationMetadata:
        """The record of one file: the request's values, `text` (no prefix) and the actuals."""
        return GenerationMetadata.from_generate_defaults(
            self.request.defaults(),
            text=text,
            delimiter=self.request.delimiter.replace("\n", "\\n"),
            seed=self.seed,
            time_taken_s=round(seconds, 3),
            datetime=datetime.now().isoformat(timespec="seconds"),
            model=self.settings.autoregressive_model or getattr(self.tts, "model_name", None),
            model_hash=getattr(self.tts, "model_hash", None) or None,
            latents=self.latents_b64,
        )

    def save(self, name: str, wav: torch.Tensor, text: str, seconds: float) -> Path:
        """Apply the output rate and volume, then write `run_dir/name` atomically with metadata.

        A failing post-processing step (rate, volume, metadata) never loses the clip: it is saved
        without that step, and a note says what was skipped and why.
        """
        settings = self.settings
        try:
            out, rate = postprocess_output(
                wav, OUTPUT_SAMPLE_RATE, settings.output_sample_rate, settings.output_volume
            )
        except Exception as error:  # boundary: keep the raw 24 kHz audio
            log.exception("Output resampling/volume failed for %s", name)
            self.notes.append(
                f"{name}: the Output Sample Rate and Volume could not be applied ({error}); "
                f"saved unprocessed at {OUTPUT_SAMPLE_RATE} Hz."
            )
            out, rate = wav, OUTPUT_SAMPLE_RATE
        metadata = self.metadata(text, seconds)
        try:
            return save_clip(self.run_dir / name, out, rate, metadata,
                             embed=settings.embed_output_metadata)  # fmt: skip
        except MetadataError as error:
            log.exception("Metadata could not be written to %s", name)
            self.notes.append(f"{name}: saved without its settings metadata ({error}).")
            return save_clip(self.run_dir / name, out, rate, None)

    def tag(self, path: Path, text: str) -> None:
        """Add the metadata to a file made after saving (VoiceFixer); a failure is only a note."""
        try:
            save_metadata(path, self.metadata(text, self.elapsed_s()),
                          embed=self.settings.embed_output_metadata)  # fmt: skip
        except MetadataError as error:
            log.exception("Metadata could not be written to %s", path)
            self.notes.append(f"{path.name}: saved without its settings metadata ({error}).")


def _wait_progress(report: ProgressFn) -> Callable[[int], None]:
    return lambda position: report(
        0.0, f"Waiting for the current job to finish (position {position} in the queue)"
    )


def check_text(request: GenerateRequest) -> None:
    """The checks of the prompt that need no model: control characters, markup, the emotion.

    Raises:
        InvalidInput: naming the problem; MarkupError names the character of bad markup.
    """
    check_control_characters(request.text)
    if has_markup(request.text):
        parse_markup(request.text)
    emotion_prefix(request.emotion, request.custom_emotion)


def _prompts_for(tts: Any, request: GenerateRequest, lexicon: Lexicon) -> PreparedPrompts:
    """The lines of the request, split by tokens after cleaning when the model has a tokenizer, and
    respelled by the lexicon in the prompts (lines are measured as respelled)."""
    count = getattr(tts, "count_text_tokens", None)
    limit = int(getattr(tts, "text_token_limit", 0) or 0)
    return prepare_prompts(
        request.text, request.delimiter, request.emotion, request.custom_emotion,
        count_tokens=count, token_limit=limit, respell=lexicon.apply if lexicon.entries else None,
    )  # fmt: skip


def split_notes(request: GenerateRequest, lines: tuple[str, ...], auto_split: bool) -> list[str]:
    notes = []
    separator = normalize_delimiter(request.delimiter)
    if separator and separator in request.text:
        empty = sum(1 for piece in request.text.split(separator) if not piece.strip())
        if empty:
            notes.append(f"Skipped {empty} empty line(s).")
    if auto_split:
        notes.append(
            f"The text was split into {len(lines)} lines at sentence (or clause) ends, so that each "
            "fits one pass."
        )
    return notes


def latents_progress(report: ProgressFn | None) -> Callable[[str, int, int], None] | None:
    if report is None:
        return None
    return lambda stage, done, total: report(
        VOICE_SHARE * done / max(total, 1), "Computing voice latents"
    )


def _line_progress(report: ProgressFn, index: int, lines: int) -> Callable[[str, int, int], None]:
    """Map TorToiSe's (stage, done, total) for line `index` onto the whole run's bar."""
    span = 1.0 - VOICE_SHARE - SAVE_SHARE

    def on_progress(stage: str, done: int, total: int) -> None:
        start, end = STAGE_SPANS.get(stage, (0.0, 1.0))
        within = start + (end - start) * (done / total if total else 1.0)
        label = STAGE_LABELS.get(stage, stage)
        prefix = f"Line {index + 1}/{lines}: " if lines > 1 else ""
        report(VOICE_SHARE + span * (index + within) / lines, f"{prefix}{label} {done}/{total}")

    return on_progress
