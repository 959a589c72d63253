"""Multi-voice scripts: parse `Voice: text` lines into segments, list voices that cannot be used before
anything renders, turn segments into rows (text, voice, speed, pause after), and render a whole script
into one combined file with the Generate service.

The parsing and the checks are pure; only `render_script` does work (through `Generator.generate`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf
import torch

from src.errors import AppError, InvalidInput
from src.markup import MarkupError, Pause, Piece, SpeechPiece, parse_markup, stretch
from src.metadata import GenerationMetadata
from src.paths import SPECIAL_VOICES
from src.results import create_run, save_clip
from src.voices import AUDIO_EXTENSIONS, LATENTS_PREFIX, VoiceLibrary

if TYPE_CHECKING:
    from src.generate import GenerateRequest, Generator
    from src.lexicon import Lexicon

# A speaker label: starts with a letter, up to 100 characters without brackets or colons, then a colon
# followed by a space or the end of the line (so "10:30" and "http://..." are not labels).
_LABEL_RE = re.compile(r"^\s*(?P<voice>[^\W\d_][^:\[\]{}\n]{0,99}?)\s*:(?:\s+|$)(?P<text>.*)$")
COMMENT_PREFIX = "#"
ESCAPE_PREFIX = "\\"
SCRIPT_RESULTS_VOICE_KEY = "script_segments"  # GenerationMetadata.extra key of the combined file


@dataclass(frozen=True)
class ScriptSegment:
    """One non-empty script line with its speaker.

    Attributes:
        voice: the voice that speaks it (a voice folder, an `a&b` blend or `random`).
        text: the line with its markup, without the speaker label.
        pieces: the line's speech pieces and pauses (see src.markup.parse_markup).
        line: 1-based line number in the script (for messages).
        turn: 0-based index of the speaker turn; consecutive lines of one label share it.
    """

    voice: str
    text: str
    pieces: tuple[Piece, ...]
    line: int
    turn: int


@dataclass(frozen=True)
class ScriptRow:
    """One render unit: what a project row (part 1) holds for a script.

    Attributes:
        voice: the voice of the row.
        text: plain text for the tokenizer (no markup; `[bracket]` prompt engineering kept).
        speed: time-stretch after the vocoder, 0.5-2.0 (1.0 = none).
        pause_after_s: silence after the row, from the `[pause]` markup that follows it.
        line: 1-based script line it comes from.
    """

    voice: str
    text: str
    speed: float = 1.0
    pause_after_s: float = 0.0
    line: int = 0


@dataclass(frozen=True)
class VoiceProblem:
    """A voice named in the script that cannot be used, with the lines that name it."""

    voice: str
    lines: tuple[int, ...]
    reason: str

    def message(self) -> str:
        where = ", ".join(str(n) for n in self.lines)
        return f"'{self.voice}' (line{'s' if len(self.lines) > 1 else ''} {where}): {self.reason}"


class ScriptVoicesError(InvalidInput):
    """Some voices of a script cannot be used; `problems` lists every one."""

    def __init__(self, problems: Sequence[VoiceProblem]) -> None:
        lines = "\n".join(f"- {p.message()}" for p in problems)
        super().__init__(f"The script names voices that cannot be used; nothing was rendered:\n{lines}")
        self.problems = tuple(problems)


def parse_script(text: str, default_voice: str | None = None, *, labels: bool = True) -> list[ScriptSegment]:
    """Split a script into segments, one per non-empty line.

    `Voice: text` starts a speaker turn. A line without a label continues the previous speaker; lines
    before the first label use `default_voice`. A label alone on its line (`Bob:`) sets the speaker of
    the lines that follow. Lines starting with `#` are comments; a leading backslash (`\\Note: ...`)
    keeps a line that looks like a label as plain text. Markup is parsed here, so its errors name the line.

    Args:
        text: the script.
        default_voice: voice of the lines before the first label (None or "" = they need a label).
        labels: False reads plain text: every line is `default_voice`'s, and colons, `#` and a leading
            backslash are just text (markup is still parsed).

    Returns:
        Segments in script order.

    Raises:
        InvalidInput: empty script, only labels and comments, a line with no speaker and no default
            voice, or bad markup (the message names the line and the character).
    """
    if not text or not text.strip():
        raise InvalidInput("The script is empty. Write one line per speaker, like 'Alice: Hello.'")
    voice = (default_voice or "").strip() or None
    segments: list[ScriptSegment] = []
    turn = -1 if voice is None else 0
    label_count = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or (labels and stripped.startswith(COMMENT_PREFIX)):
            continue
        label = None if not labels or stripped.startswith(ESCAPE_PREFIX) else _LABEL_RE.match(raw)
        if label is not None:
            voice, line_text = label.group("voice").strip(), label.group("text").strip()
            turn, label_count = turn + 1, label_count + 1
        else:
            escaped = labels and stripped.startswith(ESCAPE_PREFIX)
            line_text = stripped[1:].strip() if escaped else stripped
        if not line_text:
            continue
        if voice is None:
            raise InvalidInput(
                f"Line {number} has no speaker. Start it with a voice name and a colon ('Alice: ...') "
                "or pick a default voice."
            )
        try:
            pieces = tuple(parse_markup(line_text))
        except MarkupError as error:
            column = raw.index(line_text) + error.position + 1
            raise InvalidInput(
                f"Line {number}: markup error at character {column}: {error.detail}"
            ) from error
        segments.append(ScriptSegment(voice, line_text, pieces, number, max(turn, 0)))
    if not any(isinstance(p, SpeechPiece) for s in segments for p in s.pieces):
        if not labels:
            raise InvalidInput("The text has nothing to say (only pauses); add some words.")
        what = "only speaker labels" if label_count and not segments else "nothing to say"
        raise InvalidInput(
            f"The script has {what}: write what each voice says after its label, like 'Alice: Hello.'"
        )
    return segments


def script_voices(segments: Sequence[ScriptSegment]) -> dict[str, tuple[int, ...]]:
    """Each voice of the script (in order of first use) and the lines that name it."""
    found: dict[str, list[int]] = {}
    for segment in segments:
        found.setdefault(segment.voice, []).append(segment.line)
    return {voice: tuple(lines) for voice, lines in found.items()}


def check_voices(segments: Sequence[ScriptSegment], library: VoiceLibrary) -> list[VoiceProblem]:
    """Every voice of the script that cannot render, without loading any audio.

    A voice is usable when it is `random`, a folder with at least one audio clip or a latents file, or a
    blend `a&b` of such folders. `microphone` is refused (a script has no recording).

    Returns:
        One VoiceProblem per unusable voice (empty when all are fine), in order of first use.
    """
    problems = []
    for voice, lines in script_voices(segments).items():
        reason = _voice_problem(voice, library)
        if reason:
            problems.append(VoiceProblem(voice, lines, reason))
    return problems


def _voice_problem(voice: str, library: VoiceLibrary) -> str | None:
    if voice == "random":
        return None
    if voice == "microphone":
        return "a script cannot use the microphone; record the voice into voices/ first"
    try:
        parts = library.blend_parts(voice) or [voice]
        for part in parts:
            folder = library.voice_dir(part)
            has_audio = bool(library.clip_files(part))
            has_latents = any(folder.glob(f"{LATENTS_PREFIX}*.pth"))  # cache files and mrq's cond_latents.pth
            if not has_audio and not has_latents:
                kinds = "/".join(ext.lstrip(".").upper() for ext in AUDIO_EXTENSIONS)
                return f"voices/{part}/ has no clips; add {kinds} files of the speaker"
    except AppError as error:
        known = [v for v in library.list_voices() if v not in SPECIAL_VOICES]
        hint = f" Known voices: {', '.join(known)}." if known else " There are no voices yet."
        return f"unknown voice ({error.message}){hint}"
    return None


def script_rows(segments: Sequence[ScriptSegment]) -> list[ScriptRow]:
    """Flatten segments into render rows: one per speech piece, pauses folded into `pause_after_s`.

    A pause before the first piece of the script is dropped (there is nothing to pause after); every
    other pause lengthens the pause after the row before it.
    """
    rows: list[ScriptRow] = []
    for segment in segments:
        for piece in segment.pieces:
            if isinstance(piece, Pause):
                if rows:
                    rows[-1] = dataclasses.replace(
                        rows[-1], pause_after_s=round(rows[-1].pause_after_s + piece.seconds, 6)
                    )
                continue
            rows.append(ScriptRow(segment.voice, piece.text, piece.speed, 0.0, segment.line))
    return rows


# ---------------------------------------------------------------------- rendering without projects


@dataclass(frozen=True)
class ScriptResult:
    """A rendered script.

    Attributes:
        file: the combined WAV (its metadata `extra["script_segments"]` lists every row).
        row_files: the final file of each row, in its voice's own results folder.
        segments: per row: voice, text, line, speed, start_s, end_s in the combined file.
        notes: messages from the generations.
    """

    file: Path
    row_files: tuple[Path, ...]
    segments: tuple[dict, ...]
    notes: tuple[str, ...]


def render_script(
    generator: Generator,
    request: GenerateRequest,
    *,
    lexicon: Lexicon | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ScriptResult:
    """Render a script (`request.text`) into one combined file, each row with its voice.

    Every row is one `Generator.generate` call with the request's settings (one candidate), so each
    row file lands in `results/<voice>/<run>/` with the usual metadata and latents cache. The rows are
    stretched to their speed, joined with their pauses and written as `script.wav` in the last row's run
    folder... of the default voice: `results/<request.voice>/<time>-script/`.

    Args:
        generator: the app's `src.generate.Generator`.
        request: a `GenerateRequest`; `voice` is the default voice of unlabelled lines.
        lexicon: the respellings the model reads (default: the global lexicon, as the Generate tab); the
            row files keep the typed text.
        progress: (fraction, message) callback.

    Raises:
        InvalidInput / ScriptVoicesError: a bad script, or voices that cannot be used (nothing renders).
    """
    report = progress or (lambda fraction, text: None)
    segments = parse_script(request.text, request.voice)
    problems = check_voices(segments, generator.voices)
    if problems:
        raise ScriptVoicesError(problems)
    rows = script_rows(segments)
    waves, files, notes, meta_rows = [], [], [], []
    sample_rate = None
    position_s = 0.0
    for index, row in enumerate(rows):
        text = row.text

        def row_progress(fraction: float, message: str, index: int = index) -> None:
            report((index + fraction) / len(rows), f"Row {index + 1}/{len(rows)} ({row.voice}): {message}")

        one = dataclasses.replace(request, text=text, voice=row.voice, candidates=1, delimiter="\\n")
        result = generator.generate(one, row_progress, lexicon=lexicon)
        notes.extend(result.notes)
        data, rate = sf.read(result.files[0], dtype="float32", always_2d=True)
        if sample_rate not in (None, rate):
            raise InvalidInput("The rows were saved at different sample rates; render the script again.")
        sample_rate = rate
        wav = stretch(torch.from_numpy(data.T.copy()), row.speed)
        waves.append(wav)
        files.append(result.files[0])
        duration_s = wav.shape[-1] / rate
        meta_rows.append({
            "index": index, "voice": row.voice, "text": row.text, "line": row.line, "speed": row.speed,
            "start_s": round(position_s, 4), "end_s": round(position_s + duration_s, 4),
            "pause_after_s": row.pause_after_s, "file": str(result.files[0]),
        })  # fmt: skip
        position_s += duration_s + row.pause_after_s
        if index < len(rows) - 1:
            waves.append(wav.new_zeros(wav.shape[0], round(row.pause_after_s * rate)))
    combined = torch.cat(waves, dim=-1)
    folder_voice = request.voice.strip() if request.voice and request.voice.strip() else rows[0].voice
    run = create_run(generator.paths, folder_voice)
    settings = generator.settings()
    metadata = GenerationMetadata(
        text=request.text.strip(), voice=folder_voice, datetime=datetime.now().isoformat(timespec="seconds"),
        extra={SCRIPT_RESULTS_VOICE_KEY: meta_rows},
    )  # fmt: skip
    path = save_clip(run.run_dir / "script.wav", combined, sample_rate, metadata,
                     embed=settings.embed_output_metadata)  # fmt: skip
    report(1.0, "Done")
    return ScriptResult(path, tuple(files), tuple(meta_rows), tuple(dict.fromkeys(notes)))
