"""Fast-mode generation for the app: every line is streamed from the core's FastStream, each chunk handed
to the caller as soon as it exists, then saved like a standard run (clips, combined.wav, metadata with the
mode). A stopped stream keeps the audio made so far as `partial.wav`, marked partial in its metadata.
The global lexicon and inline markup apply as in standard runs: a `[pause]` is played as silence, and a
`{speed}` span is played once it is whole (the time-stretch needs all of it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.audio_ops import join_with_pauses, non_final_outputs, postprocess_output
from src.errors import InvalidInput
from src.generate import (
    GenerateRequest,
    GenerateResult,
    Generator,
    RunState,
    check_request,
    latents_progress,
    split_notes,
)
from src.lexicon import Lexicon
from src.markup import stretch
from src.prompting import prepare_prompts, resolve_seed
from src.results import (
    clip_filename,
    combined_filename,
    create_run,
    delete_clips,
    save_clip,
    write_input_file,
)
from src.settings import save_generate_defaults
from tortoise import FAST_UNUSED_OPTIONS, OUTPUT_SAMPLE_RATE, GenerationCancelled, StreamSettings

log = logging.getLogger(__name__)

FAST_MODE = "Fast"
PARTIAL_FILE = "partial.wav"
UNUSED_NOTE = (
    "Fast mode used one sample per line and the HiFi-GAN decoder: Samples, Iterations, Pause Size and the "
    "diffusion settings did not apply."
)


@dataclass(frozen=True)
class FastUpdate:
    """One step of a fast run: a chunk to play now, or (last) the saved result.

    Attributes:
        audio: (samples,) float32 mono chunk at `sample_rate`, or None.
        line: 0-based line the chunk belongs to.
        status: what is happening, for a progress label.
        result: set on the last update only.
    """

    audio: np.ndarray | None = None
    sample_rate: int = OUTPUT_SAMPLE_RATE
    line: int = 0
    status: str = ""
    result: GenerateResult | None = None


class FastGenerator:
    """Runs Fast mode over the standard Generator's engine, voices and settings.

    Attributes:
        stream_settings: when chunks are made; the chunk sizes are capped at the line's code limit.
    """

    def __init__(self, generator: Generator, stream_settings: StreamSettings | None = None) -> None:
        self.generator = generator
        self.stream_settings = stream_settings or StreamSettings()

    def generate(self, request: GenerateRequest, progress: Callable[[float, str], None] | None = None, *,
                 lexicon: Lexicon | None = None) -> GenerateResult:
        """The whole run without playback (the API and Generator.generate in Fast mode)."""
        for update in self.stream(request, lexicon=lexicon):
            if progress is not None and update.status:
                progress(0.5, update.status)
            if update.result is not None:
                return update.result
        raise AssertionError("a fast run always ends with a result")

    def stream(self, request: GenerateRequest, *, lexicon: Lexicon | None = None) -> Iterator[FastUpdate]:
        """Yield each line's chunks as they are made, then one update with the saved result.

        Args:
            request: the Generate tab's values (Mode Fast); the text may hold inline markup.
            lexicon: respells what TorToiSe hears; None reads the global one (`config/lexicon.json`).

        Raises:
            InvalidInput: Candidates above 1 or a CVVP weight (fast mode has nothing to rank), [brackets]
                or an emotion (they cannot be cut from a stream), bad markup, a bad lexicon, bad values.
            VoiceNotFound / VoiceUnusable / TortoiseError: as for standard generation.
        """
        g = self.generator
        request = check_request(request)
        if request.candidates > 1 or request.cvvp_weight > 0:
            raise InvalidInput(
                "Fast mode makes one clip per line and ranks nothing: set Candidates to 1 and CVVP Weight "
                "to 0, or switch Mode to Standard."
            )
        lexicon, lexicon_notes = (lexicon, ()) if lexicon is not None else g.read_lexicon()
        prompts = prepare_prompts(request.text, request.delimiter, request.emotion, request.custom_emotion,
                                  respell=lexicon.apply if lexicon.entries else None)
        if any("[" in prompt for prompt in prompts.prompts):
            raise InvalidInput(
                "Fast mode plays the audio while it is made, so [bracketed] words and emotions cannot be cut "
                "out of it. Set Emotion to None and remove the brackets, or switch Mode to Standard."
            )
        seed = resolve_seed(request.seed)
        settings = g.settings()
        notes = [*lexicon_notes, *split_notes(request, prompts.lines, prompts.auto_split), UNUSED_NOTE]
        started = time.perf_counter()
        with g.engine.job(half=request.half_precision, few_rows=True) as tts:
            for prompt in prompts.prompts:
                tts.encode_text(prompt)  # a too-long line fails now, before any audio
            yield FastUpdate(status="Preparing the voice")
            with g.engine.latents_on_cpu(tts, settings.force_cpu_for_conditioning_latents):
                voice = g.voices.conditioning(
                    request.voice, tts, voice_chunks=request.voice_chunks, slim=settings.slim_latents,
                    max_chunk_s=settings.latents_max_chunk_size, mic_audio=request.mic_audio, seed=seed,
                    progress=latents_progress(lambda fraction, text: None),
                )
            notes.extend(voice.notes)
            g.engine.check_cancelled()
            run = RunState(tts, create_run(g.paths, request.voice).run_dir, request, prompts, voice, seed,
                       settings, started, lambda fraction, text: None, notes)
            result = yield from self._lines(run)
        save_generate_defaults(g.paths.generate_file, request.defaults())
        log.info("Fast generation took %.3f s, saved to %s", result.time_s, run.run_dir)
        yield FastUpdate(status="Done", result=result)

    def _lines(self, run: RunState) -> Iterator[FastUpdate]:
        """Stream and save every line; returns the GenerateResult (the generator's return value)."""
        g, prompts = self.generator, run.prompts
        options = {k: v for k, v in g.engine.default_options.items() if k not in FAST_UNUSED_OPTIONS}
        options.update(temperature=run.request.temperature, top_p=run.request.top_p,
                       length_penalty=run.request.length_penalty,
                       repetition_penalty=run.request.repetition_penalty)
        waves: list[torch.Tensor] = []
        written: list[Path] = []
        heard: list[torch.Tensor] = []  # every chunk played so far, silences included
        try:
            if prompts.pause_before_s:
                yield _silence(prompts.pause_before_s, 0, heard)
            for index in range(len(prompts.lines)):
                line_start = time.perf_counter()
                waves.append((yield from self._line(run, index, options, heard)))
                name = clip_filename(index, 0, lines=len(prompts.lines), candidates=1)
                seconds = time.perf_counter() - line_start
                written.append(run.save(name, waves[-1], prompts.marked_line(index), seconds))
                if prompts.pauses_after_s[index]:
                    yield _silence(prompts.pauses_after_s[index], index, heard)
        except GenerationCancelled:
            return self._keep_partial(run, heard, written)
        finals = list(written)
        text = prompts.marked_line(0)
        if len(prompts.lines) > 1 or prompts.has_pauses:
            text = run.request.text.strip()
            joined = join_with_pauses(waves, OUTPUT_SAMPLE_RATE, prompts.pauses_after_s,
                                      prompts.pause_before_s)
            finals = [run.save(combined_filename(0, candidates=1), joined, text, run.elapsed_s())]
            written.extend(finals)
        finals = g._voicefixer(run, finals, text, written)
        prune = run.settings.delete_non_final_output
        delete_clips(non_final_outputs(written, finals, delete_non_final=prune))
        write_input_file(run.run_dir, run.metadata(run.request.text.strip(), run.elapsed_s()).to_dict(
            include_latents=False))
        return self._result(run, finals)

    def _line(
        self, run: RunState, index: int, options: dict, heard: list[torch.Tensor]
    ) -> Iterator[FastUpdate]:
        """Stream one line, played chunk by chunk; returns its audio, (1, samples), stretched to its speed.

        A line in a `{speed}` span is held back until it is whole, then stretched and played at once.
        """
        g, lines, speed = self.generator, run.prompts.lines, run.prompts.speeds[index]
        stream = run.tts.tts_stream(
            run.prompts.prompts[index], conditioning_latents=run.voice.latents, seed=run.seed,
            cancel=g.engine.is_cancelled, settings=self._settings(options), **options,
        )
        status = f"Line {index + 1}/{len(lines)}" if len(lines) > 1 else "Speaking"
        chunks: list[torch.Tensor] = []
        for chunk in stream:
            chunks.append(chunk)
            if speed == 1.0:
                heard.append(chunk.reshape(-1))
                yield FastUpdate(audio=chunk.numpy(), line=index, status=status)
        run.notes.extend(stream.notes)
        wave = torch.cat(chunks).reshape(1, -1)
        if speed != 1.0:
            wave = stretch(wave, speed)
            heard.append(wave.reshape(-1))
            yield FastUpdate(audio=wave.reshape(-1).numpy(), line=index, status=f"{status} (speed {speed:g})")
        return wave

    def _settings(self, options: dict) -> StreamSettings:
        """The stream settings with chunk sizes capped at the most codes a line may have."""
        limit = int(options.get("max_mel_tokens", 500))
        s = self.stream_settings
        return dataclasses.replace(s, first_chunk_codes=min(s.first_chunk_codes, limit),
                                   chunk_codes=min(s.chunk_codes, limit))

    def _keep_partial(self, run: RunState, heard: list[torch.Tensor], written: list[Path]) -> GenerateResult:
        """Stop was pressed: save everything played so far as partial.wav (marked partial) and report it."""
        if not heard:
            run.notes.append("Stopped before any audio was made; nothing was saved.")
            return self._result(run, written)
        audio = torch.cat(heard).reshape(1, -1)
        meta = dataclasses.replace(run.metadata(run.request.text.strip(), run.elapsed_s()), partial=True)
        out, rate = postprocess_output(audio, OUTPUT_SAMPLE_RATE, run.settings.output_sample_rate,
                                       run.settings.output_volume)
        embed = run.settings.embed_output_metadata
        path = save_clip(run.run_dir / PARTIAL_FILE, out, rate, meta, embed=embed)
        run.notes.append(f"Stopped: the {audio.shape[-1] / OUTPUT_SAMPLE_RATE:.1f} s made so far are kept in "
                         f"{PARTIAL_FILE}, marked partial.")
        return self._result(run, [path])

    def _result(self, run: RunState, files: list[Path]) -> GenerateResult:
        return GenerateResult(run.run_dir, tuple(files), run.seed, run.elapsed_s(),
                              tuple(dict.fromkeys(run.notes)), run.prompts.lines, run.voice.sample)


def _silence(seconds: float, line: int, heard: list[torch.Tensor]) -> FastUpdate:
    """A `[pause]`: that much silence, played like any chunk (and kept in `heard`)."""
    chunk = torch.zeros(round(seconds * OUTPUT_SAMPLE_RATE))
    heard.append(chunk)
    return FastUpdate(audio=chunk.numpy(), line=line, status=f"Pause {seconds:g} s")
