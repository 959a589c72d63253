"""Command-line generation on the same code path as the app: text (or a text file) + a voice folder
-> WAV files. `python -m tortoise --help` lists the options."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from tortoise.audio import VOICE_SAMPLE_RATE, load_audio, save_wav
from tortoise.errors import GenerationCancelled, TortoiseError
from tortoise.options import PRESETS, SAMPLERS
from tortoise.streaming import StreamSettings
from tortoise.text import split_text_by_tokens

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")
# Chunk sizes in tokens after cleaning: about 200 and 300 characters of plain English (~20 s of speech).
CHUNK_DESIRED_TOKENS = 120
CHUNK_MAX_TOKENS = 180
log = logging.getLogger("tortoise.cli")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tortoise", description="Generate speech with TorToiSe.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what to say; [bracketed] parts guide delivery and are cut")
    src.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file")
    p.add_argument("--voice", default="random", help="a folder name under --voices-dir, or 'random'")
    p.add_argument("--voices-dir", type=Path, default=Path("voices"))
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    p.add_argument("--candidates", type=int, default=1, help="best candidates to keep per chunk (k)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible output (default: random)")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help="diffusion sampler (default: p)")
    p.add_argument("--output-dir", type=Path, default=Path("results") / "cli")
    p.add_argument("--models-dir", type=Path, default=Path("models") / "tortoise")
    p.add_argument("--autoregressive-model", type=Path, default=None, help="a fine-tuned AR checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, directml, mps")
    p.add_argument("--half", action="store_true", help="fp16 on CUDA, bf16 on CPUs that support it")
    p.add_argument("--low-vram", action="store_true", help="move each model to the GPU only for its stage")
    p.add_argument("--offline", action="store_true", help="never download; fail listing missing files")
    p.add_argument("--fast", action="store_true", help="fast mode: one sample, HiFi-GAN decoder")
    p.add_argument("--stream", action="store_true",
                   help="fast mode, writing each line's WAV as it grows (<name>.partial.wav until done)")
    p.add_argument("--stream-first", type=int, default=StreamSettings.first_chunk_codes,
                   help="codes before the first streamed chunk")
    p.add_argument("--stream-chunk", type=int, default=StreamSettings.chunk_codes,
                   help="codes per later streamed chunk")
    return p


def load_voice_clips(voices_dir: Path, voice: str) -> list:
    """Clips of voices_dir/voice at 22.05 kHz; [] for 'random'."""
    if voice == "random":
        return []
    if "/" in voice or "\\" in voice or voice in ("", ".", ".."):
        raise TortoiseError(f"'{voice}' is not a voice name.")
    folder = voices_dir / voice
    files = (
        sorted(f for f in folder.glob("*") if f.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
    )
    if not files:
        raise TortoiseError(f"Voice '{voice}' has no clips: put WAV/MP3/FLAC/OGG files into {folder}.")
    return [load_audio(f, VOICE_SAMPLE_RATE) for f in files]


def main(
    argv: Sequence[str] | None = None, tts_factory: Callable[[argparse.Namespace], object] | None = None
) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input or failure, with a message on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        text = args.text if args.text is not None else _read_text(args.text_file)
        clips = load_voice_clips(args.voices_dir, args.voice)
        if tts_factory is None:
            from tortoise.api import TextToSpeech

            tts = TextToSpeech.from_dir(
                args.models_dir,
                device=args.device,
                half=args.half,
                low_vram=args.low_vram,
                autoregressive_path=args.autoregressive_model,
                offline=args.offline or None,
            )
        else:
            tts = tts_factory(args)
        latents = tts.get_conditioning_latents(clips) if clips else None
        chunks = split_for_tts(tts, text) or [text]  # empty text: tts() says so
        if any("[" in chunk for chunk in chunks) and hasattr(tts, "load_aligner"):
            tts.load_aligner()  # [brackets] need the aligner: fail now, not after sampling
        overrides = {"k": args.candidates}
        if args.sampler:
            overrides["sampler"] = args.sampler
        args.output_dir.mkdir(parents=True, exist_ok=True)
        seed = args.seed
        for i, chunk in enumerate(chunks):
            if args.stream:
                path = args.output_dir / f"{args.voice}_{i:03d}_0.wav"
                seed = _stream_line(tts, chunk, latents, args, seed, overrides, path)
                continue
            speak = tts.tts_fast if args.fast else tts.tts
            result = speak(chunk, conditioning_latents=latents, preset=args.preset, seed=seed, **overrides)
            seed = result.seed if seed is None else seed  # one seed for the whole text
            for note in result.notes:
                log.warning(note)
            for j, wav in enumerate(result.waveforms):
                path = args.output_dir / f"{args.voice}_{i:03d}_{j}.wav"
                save_wav(path, wav, result.sample_rate)
                log.info("wrote %s", path)
        log.info("seed %s", seed)
    except (TortoiseError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def split_for_tts(tts: object, text: str) -> list[str]:
    """Chunks of `text` that each fit one pass, measured in tokens after cleaning (sentences packed to
    about CHUNK_DESIRED_TOKENS, cut at clauses then spaces when longer than CHUNK_MAX_TOKENS)."""
    count = getattr(tts, "count_text_tokens", None)
    if count is None:  # an object without a tokenizer: measure characters, as the official read.py
        return split_text_by_tokens(text, len, 300, 200)
    maximum = min(CHUNK_MAX_TOKENS, tts.text_token_limit)
    return split_text_by_tokens(text, count, maximum, min(CHUNK_DESIRED_TOKENS, maximum))


def _stream_line(tts, text, latents, args, seed, overrides, path: Path) -> int:
    """Stream one line into `path`: a growing `.partial.wav` renamed once complete. Returns the seed."""
    settings = StreamSettings(first_chunk_codes=args.stream_first, chunk_codes=args.stream_chunk)
    stream = tts.tts_stream(
        text, conditioning_latents=latents, preset=args.preset, seed=seed, settings=settings, **overrides
    )
    partial = path.with_name(path.stem + ".partial.wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    first = None
    try:
        with sf.SoundFile(partial, "w", stream.sample_rate, 1, subtype="PCM_16", format="WAV") as out:
            for chunk in stream:
                out.write(np.clip(chunk.numpy(), -1.0, 1.0))
                out.flush()  # the header is rewritten: players can read what is there so far
                first = time.perf_counter() - t0 if first is None else first
    except (GenerationCancelled, KeyboardInterrupt):
        log.warning("stopped: the audio so far is kept in %s (partial)", partial)
        raise
    os.replace(partial, path)
    for note in stream.notes:
        log.warning(note)
    log.info("wrote %s (%d codes; first audio after %.2f s)", path, len(stream.codes), first or 0.0)
    return stream.seed if seed is None else seed


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TortoiseError(f"Cannot read the text file {path}: {e}") from e
