"""[Bracket] redaction: locate each character of a clip's text in the audio with a wav2vec2 CTC model,
then cut out the audio of the bracketed spans (as tortoise/utils/wav2vec_alignment.py does).

The parsing, text alignment and frame walk are pure functions; `Wav2VecAligner` adds the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from tortoise.audio import OUTPUT_SAMPLE_RATE, WAV2VEC2_SAMPLE_RATE, resample
from tortoise.device import DevicePlan, device_kind
from tortoise.errors import InvalidInputError, ModelDownloadError, TortoiseError

log = logging.getLogger(__name__)

# Hugging Face Hub ids of the models the original uses (tortoise/utils/wav2vec_alignment.py).
WAV2VEC2_MODEL_ID = "jbetker/wav2vec2-large-robust-ft-libritts-voxpopuli"
CTC_TOKENIZER_ID = "jbetker/tacotron-symbols"

SKIP_CHAR = "~"  # marks a character of the expected text that the recognised text does not contain
BLANK = ""  # the symbol of a CTC class that stands for no character (blank/pad and special tokens)
NORM_EPS = 1e-7  # added to the variance before the wav2vec2 input is scaled to unit variance

Interval = tuple[int, int]


def split_redacted(text: str) -> tuple[str, list[Interval]]:
    """Split text with [bracketed] spans into the spoken text and the character ranges to keep.

    The clip speaks every character, bracketed or not, so the returned text is the input without the
    bracket characters. Kept intervals cover the text outside brackets; each is `(first, last)`, both
    inclusive indices into the returned text. Empty pieces give no interval, so text that is all
    brackets gives no intervals (and `"[]"` an empty text): what to do then is the caller's choice.

    Args:
        text: the text as given by the user, e.g. `"[I am really sad,] Please feed me."`.

    Returns:
        `(spoken_text, kept_intervals)`, e.g. `("I am really sad, Please feed me.", [(16, 31)])`.

    Raises:
        InvalidInputError: a '[' is not closed, a ']' has no '[', or brackets are nested.
    """
    spoken: list[str] = []
    intervals: list[Interval] = []
    piece_start = 0  # index in `spoken` where the current unbracketed piece began
    open_at: int | None = None  # position in `text` of the '[' currently open

    def keep_piece() -> None:
        if len(spoken) > piece_start:
            intervals.append((piece_start, len(spoken) - 1))

    for position, char in enumerate(text):
        if char == "[":
            if open_at is not None:
                raise InvalidInputError(
                    f"Nested brackets are not supported: the '[' at character {position + 1} is inside "
                    f"the '[' opened at character {open_at + 1}. Close each [bracketed] span before "
                    "opening another."
                )
            keep_piece()
            open_at = position
        elif char == "]":
            if open_at is None:
                raise InvalidInputError(
                    f"Unbalanced brackets: the ']' at character {position + 1} has no '[' before it. "
                    "Remove it or add the missing '['."
                )
            open_at = None
            piece_start = len(spoken)
        else:
            spoken.append(char)
    if open_at is not None:
        raise InvalidInputError(
            f"Unbalanced brackets: the '[' at character {open_at + 1} is never closed. "
            "Add the missing ']' or remove the '['."
        )
    keep_piece()
    return "".join(spoken), intervals


def align_text(expected: str, predicted: str, skip_char: str = SKIP_CHAR) -> str:
    """Match `expected` against `predicted`, keeping the longest common subsequence.

    Characters of `expected` that are part of the match are kept and the others are replaced by
    `skip_char`, so the result has the length of `expected`. Ties are broken as the original's
    recursive `max_alignment` breaks them (equal leading characters always match; otherwise an expected
    character is skipped unless dropping a predicted one gives strictly more matches). This version is
    an iterative O(len(expected) * len(predicted)) table instead of a recursion.

    Args:
        expected: the text the clip should contain (already lowercased by the caller if needed).
        predicted: the text recognised in the clip.
        skip_char: the marker for unmatched characters; a `skip_char` in `expected` never matches.

    Returns:
        a string as long as `expected`: its matched characters, `skip_char` elsewhere.
    """
    rows, cols = len(expected), len(predicted)
    # best[i][j]: length of the longest common subsequence of expected[i:] and predicted[j:]
    best = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        row, below, char = best[i], best[i + 1], expected[i]
        matchable = char != skip_char
        for j in range(cols - 1, -1, -1):
            if matchable and char == predicted[j]:
                row[j] = below[j + 1] + 1
            else:
                row[j] = max(row[j + 1], below[j])

    aligned: list[str] = []
    i = j = 0
    while i < rows:
        if j < cols and expected[i] == predicted[j] and expected[i] != skip_char:
            aligned.append(expected[i])
            i, j = i + 1, j + 1
        elif j < cols and best[i][j + 1] > best[i + 1][j]:
            j += 1
        else:
            aligned.append(skip_char)
            i += 1
    return "".join(aligned)


def ctc_greedy_decode(frame_symbols: Sequence[str]) -> str:
    """Best-path CTC decoding: merge runs of the same symbol, then drop blanks.

    Args:
        frame_symbols: the argmax symbol of each logit frame, `BLANK` for the blank class.

    Returns:
        the recognised text.
    """
    decoded: list[str] = []
    previous = None
    for symbol in frame_symbols:
        if symbol != previous and symbol != BLANK:
            decoded.append(symbol)
        previous = symbol
    return "".join(decoded)


def assign_samples(
    aligned_text: str,
    frame_symbols: Sequence[str],
    samples_per_frame: int,
    num_samples: int,
    skip_char: str = SKIP_CHAR,
) -> list[int]:
    """Give every character of `aligned_text` the sample where it starts.

    As the original: the first character starts at sample 0; each later matched character goes to the
    first frame at or after the previous match (frames are consumed once) whose symbol is that
    character, at sample `frame * samples_per_frame`. Unmatched characters (`skip_char`, or a character
    no remaining frame shows, which cannot happen when `aligned_text` came from `align_text` against the
    greedy decoding of the same frames) are spread evenly between their matched neighbours, with
    `num_samples` as the anchor after the last character.

    Args:
        aligned_text: output of `align_text`.
        frame_symbols: the argmax symbol of each logit frame, `BLANK` for the blank class.
        samples_per_frame: audio samples per logit frame (integer division, as the original).
        num_samples: length of the audio in samples.
        skip_char: the marker `align_text` used for unmatched characters.

    Returns:
        one non-decreasing sample index per character of `aligned_text`.
    """
    if not aligned_text:
        return []
    starts: list[int | None] = [0]
    frame = 0
    for char in aligned_text[1:]:
        found = None if char == skip_char else _find_frame(frame_symbols, char, frame)
        if found is None:
            starts.append(None)
        else:
            starts.append(found * samples_per_frame)
            frame = found + 1
    return _interpolate_missing(starts, num_samples)


def _find_frame(frame_symbols: Sequence[str], char: str, first: int) -> int | None:
    for frame in range(first, len(frame_symbols)):
        if frame_symbols[frame] == char:
            return frame
    return None


def _interpolate_missing(starts: list[int | None], end: int) -> list[int]:
    """Fill each run of None linearly between the known values around it (integer steps, as the original)."""
    filled = [*starts, end]  # the virtual anchor after the last character
    index = 1
    while index < len(filled) - 1:
        if filled[index] is not None:
            index += 1
            continue
        run_end = index
        while filled[run_end] is None:
            run_end += 1
        before, after, steps = filled[index - 1], filled[run_end], run_end - index + 1
        for k in range(index, run_end):
            filled[k] = before + (k - index + 1) * (after - before) // steps
        index = run_end
    return filled[:-1]


def ctc_symbols(tokenizer: Any, num_classes: int) -> list[str]:
    """The character each CTC class stands for, read from a `Wav2Vec2CTCTokenizer`-like object.

    The word delimiter becomes its replacement character (a space); special tokens (the pad token is
    the CTC blank) and tokens longer than one character become `BLANK`, since only single characters
    can be matched against the text.

    Args:
        tokenizer: has `convert_ids_to_tokens(list[int])` and `all_special_tokens`, and optionally
            `word_delimiter_token` and `replace_word_delimiter_char`.
        num_classes: the number of logit classes of the model.

    Returns:
        a list of `num_classes` symbols.
    """
    tokens = tokenizer.convert_ids_to_tokens(list(range(num_classes)))
    special = set(tokenizer.all_special_tokens)
    delimiter = getattr(tokenizer, "word_delimiter_token", None)
    delimiter_char = getattr(tokenizer, "replace_word_delimiter_char", " ")
    symbols = []
    for token in tokens:
        if token is not None and token == delimiter:
            symbols.append(delimiter_char)
        elif token is None or token in special or len(token) != 1:
            symbols.append(BLANK)
        else:
            symbols.append(token)
    return symbols


def align_logits(
    logits: torch.Tensor, symbols: Sequence[str], expected_text: str, num_samples: int
) -> list[int]:
    """Find the sample where each character of `expected_text` starts, from CTC logits of the clip.

    Args:
        logits: float tensor [frames, classes] for the whole clip.
        symbols: the character of each class (see `ctc_symbols`); ids past its end count as blank.
        expected_text: the text spoken in the clip; it is lowercased before matching.
        num_samples: length of the clip in samples at the rate the indices should use.

    Returns:
        one sample index per character of `expected_text`, non-decreasing, the first one 0.
    """
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(
            f"logits must be [frames, classes] with at least one frame, got {tuple(logits.shape)}"
        )
    ids = logits.argmax(dim=-1).tolist()
    frame_symbols = [symbols[i] if i < len(symbols) else BLANK for i in ids]
    predicted = ctc_greedy_decode(frame_symbols)
    aligned = align_text(expected_text.lower(), predicted)
    samples_per_frame = num_samples // len(frame_symbols)
    return assign_samples(aligned, frame_symbols, samples_per_frame, num_samples)


def redact_audio(
    audio: torch.Tensor, alignment: Sequence[int], intervals: Sequence[Interval]
) -> torch.Tensor:
    """Keep only the audio of the kept intervals, joined in order.

    As the original, an interval `(first, last)` keeps samples from the start of character `first` up
    to the start of character `last`, so the last kept character itself is cut (it is usually a space
    or punctuation before a bracket, or the final punctuation).

    Args:
        audio: tensor [..., samples].
        alignment: start sample of each character of the spoken text (from `align_logits`).
        intervals: kept `(first, last)` character ranges (from `split_redacted`).

    Returns:
        tensor [..., kept samples]; empty along the last axis when there are no intervals.
    """
    for first, last in intervals:
        if not 0 <= first <= last < len(alignment):
            raise ValueError(f"interval ({first}, {last}) is outside the {len(alignment)} aligned characters")
    if not intervals:
        return audio[..., :0]
    return torch.cat([audio[..., alignment[first] : alignment[last]] for first, last in intervals], dim=-1)


class Wav2VecAligner:
    """Aligns a clip's text to its audio with a wav2vec2 CTC model and redacts [bracketed] spans.

    Nothing is loaded until the first `align`/`redact` (or an explicit `load`), and `transformers` is
    only imported then.

    Args:
        model_id_or_path: Hub id or local directory of a `Wav2Vec2ForCTC` checkpoint.
        tokenizer_id_or_path: Hub id or local directory of its `Wav2Vec2CTCTokenizer`.
        device: where the model runs.
        low_vram: keep the model on the CPU and move it to `device` only while it aligns a clip (as
            every other model in low-VRAM mode), emptying the device cache afterwards.
        local_files_only: never touch the network; load only from a local directory or the HF cache.
        cache_dir: the Hugging Face cache folder to use (None: the library default).
    """

    def __init__(
        self,
        model_id_or_path: str | os.PathLike = WAV2VEC2_MODEL_ID,
        tokenizer_id_or_path: str | os.PathLike = CTC_TOKENIZER_ID,
        device: str | torch.device = "cpu",
        local_files_only: bool = False,
        cache_dir: str | os.PathLike | None = None,
        low_vram: bool = False,
    ) -> None:
        self.model_id_or_path = str(model_id_or_path)
        self.tokenizer_id_or_path = str(tokenizer_id_or_path)
        self.device = torch.device(device)
        self.plan = DevicePlan(self.device, device_kind(self.device), low_vram=low_vram)
        self.local_files_only = local_files_only
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def is_loaded(self) -> bool:
        """Whether the model and tokenizer are in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model and tokenizer now (a no-op when already loaded).

        Raises:
            ModelDownloadError: either one cannot be loaded (offline and not cached, or a bad path).
            TortoiseError: `transformers` is not installed.
        """
        if self.is_loaded:
            return
        try:
            from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC
        except ImportError as error:
            raise TortoiseError(
                "[Bracket] redaction needs the 'transformers' package: install it with "
                "'pip install transformers', or turn redaction off (enable_redaction=False)."
            ) from error
        options = {"local_files_only": self.local_files_only, "cache_dir": self.cache_dir}
        # transformers reports a missing or unreachable checkpoint as OSError, a malformed id as
        # ValueError, and a tokenizer whose vocab file it could not find as TypeError.
        try:
            model = Wav2Vec2ForCTC.from_pretrained(self.model_id_or_path, **options)
        except (OSError, ValueError) as error:
            raise ModelDownloadError(self._load_message("model", self.model_id_or_path, error)) from error
        try:
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(self.tokenizer_id_or_path, **options)
        except (OSError, ValueError, TypeError) as error:
            raise ModelDownloadError(
                self._load_message("tokenizer", self.tokenizer_id_or_path, error)
            ) from error
        self._model = model.eval().to(self.plan.storage_device)
        self._tokenizer = tokenizer
        log.info("Loaded wav2vec2 aligner %s on %s", self.model_id_or_path, self.plan.storage_device)

    def _load_message(self, what: str, name: str, error: Exception) -> str:
        offline = " (offline mode: local files only)" if self.local_files_only else ""
        return (
            f"Could not load the wav2vec2 {what} '{name}' used for [bracket] redaction{offline}: {error}. "
            f"Download it once with network access (it comes from the Hugging Face Hub as '{name}' and "
            "is cached), or point to a local copy saved with save_pretrained, or turn redaction off "
            "(enable_redaction=False) and leave [brackets] out of the text."
        )

    def logits(self, audio: torch.Tensor, sample_rate: int = OUTPUT_SAMPLE_RATE) -> torch.Tensor:
        """CTC logits of a clip.

        Args:
            audio: float tensor [1, samples] or [samples].
            sample_rate: rate of `audio` in Hz; it is resampled to 16 kHz for the model.

        Returns:
            float tensor [frames, classes] on the CPU.

        Raises:
            InvalidInputError: the audio is not one mono clip.
            ModelDownloadError: the model cannot be loaded.
        """
        if audio.dim() not in (1, 2) or (audio.dim() == 2 and audio.shape[0] != 1) or audio.numel() == 0:
            raise InvalidInputError(
                f"Redaction needs one mono clip [1, samples], got shape {tuple(audio.shape)}"
            )
        self.load()
        # low-VRAM mode: on the device for this clip only, then back to the CPU (cache emptied)
        with self.plan.on_device(self._model) as model, torch.inference_mode():
            where = next(model.parameters()).device
            clip = audio.reshape(1, -1).to(device=where, dtype=torch.float32)
            clip = resample(clip, sample_rate, WAV2VEC2_SAMPLE_RATE)
            clip = (clip - clip.mean()) / torch.sqrt(clip.var() + NORM_EPS)  # unbiased var., as the original
            return model(clip).logits[0].float().cpu()  # (frames, classes), off the device before it is freed

    def align(
        self, audio: torch.Tensor, expected_text: str, sample_rate: int = OUTPUT_SAMPLE_RATE
    ) -> list[int]:
        """Find the sample where each character of `expected_text` starts in `audio`.

        Args:
            audio: float tensor [1, samples] or [samples].
            expected_text: the text spoken in the clip, without brackets.
            sample_rate: rate of `audio` in Hz (TorToiSe output is 24000).

        Returns:
            one sample index (at `sample_rate`) per character of `expected_text`, non-decreasing.

        Raises:
            InvalidInputError: the audio is not one mono clip.
            ModelDownloadError: the model cannot be loaded.
        """
        if not expected_text:
            return []
        logits = self.logits(audio, sample_rate)
        symbols = ctc_symbols(self._tokenizer, logits.shape[-1])
        return align_logits(logits, symbols, expected_text, audio.shape[-1])

    def redact(self, audio: torch.Tensor, text: str, sample_rate: int = OUTPUT_SAMPLE_RATE) -> torch.Tensor:
        """Remove the audio of the [bracketed] parts of `text` from the clip that speaks it.

        Text without '[' returns `audio` itself without loading the model; text with nothing outside
        brackets returns an empty clip.

        Args:
            audio: float tensor [1, samples] or [samples] speaking `text` without its brackets.
            text: the text with [bracketed] spans.
            sample_rate: rate of `audio` in Hz (TorToiSe output is 24000).

        Returns:
            the kept audio, same leading shape, dtype and device as `audio`.

        Raises:
            InvalidInputError: the brackets are unbalanced or nested, or the audio is not one mono clip.
            ModelDownloadError: the model cannot be loaded.
        """
        if "[" not in text and "]" not in text:
            return audio
        spoken_text, intervals = split_redacted(text)
        if not intervals:
            return audio[..., :0]
        alignment = self.align(audio, spoken_text, sample_rate)
        return redact_audio(audio, alignment, intervals)
