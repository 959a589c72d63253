"""Whisper QA of rendered segments: transcribe a take with the configured ASR backend (loaded on first use),
score it against its text (word error rate after the cleaners' normalisation) and flag dropped words,
repeated words, a cut-off ending and long internal silences. The scoring functions are pure.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from src.audio_ops import resample_output
from src.training.asr import ASR_SAMPLE_RATE, Transcriber
from tortoise import english_cleaners

FLAG_DROPPED, FLAG_REPEATED, FLAG_CUT_OFF, FLAG_SILENCE, FLAG_WER = (
    "dropped words",
    "repeated words",
    "cut-off ending",
    "long silence",
    "high WER",
)
_NON_WORD_RE = re.compile(r"[^a-z0-9' ]+")
_FRAME_S = 0.02  # silence detection frame (20 ms)
_SILENCE_DB = -40.0  # a frame this far below the loudest frame counts as silent


@dataclass(frozen=True)
class QaSettings:
    """How segments are checked.

    Attributes:
        enabled: transcribe each finished take.
        max_retries: on a flagged take, render up to this many more with new seeds and keep the best.
        max_wer: a take whose word error rate is above this (0-1) is flagged.
        max_silence_s: an internal pause longer than this (seconds) is flagged.
        language: the language Whisper transcribes as.
        consistency: score each take's likeness to its voice with CVVP (cvvp.pth and dvae.pth).
        consistency_z: a row is flagged when its score's robust z-score among the rows of its voice is
            at or below minus this.
    """

    enabled: bool = False
    max_retries: int = 0
    max_wer: float = 0.25
    max_silence_s: float = 1.0
    language: str = "en"
    consistency: bool = False
    consistency_z: float = 3.5

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> QaSettings:
        """From a project's `qa` object; unknown keys and bad values fall back to the defaults."""
        out = cls()
        for key, value in (data or {}).items():
            default = getattr(out, key, None)
            if default is None or isinstance(value, bool) != isinstance(default, bool):
                continue
            if isinstance(default, int | float) and isinstance(value, int | float):
                value = type(default)(value)
            if isinstance(value, type(default)):
                out = _replace(out, key, value)
        return out


def _replace(settings: QaSettings, key: str, value: Any) -> QaSettings:
    return QaSettings(**{**asdict(settings), key: value})


@dataclass(frozen=True)
class QaReport:
    """The check of one take.

    Attributes:
        transcript: what Whisper heard.
        wer: word error rate against the text (0 = perfect; can exceed 1).
        dropped: reference words missing from the transcript (not at the end).
        repeated: words said again right after themselves.
        cut_off: the ending is missing (last words not heard, or the audio stops mid-sound).
        silences: (start_s, end_s) of internal silences longer than the limit.
        flags: the names of the problems found (empty = fine).
    """

    transcript: str
    wer: float
    dropped: tuple[str, ...] = ()
    repeated: tuple[str, ...] = ()
    cut_off: bool = False
    silences: tuple[tuple[float, float], ...] = ()
    flags: tuple[str, ...] = field(default=())

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def score(self) -> float:
        """Lower is better: the WER plus a penalty per problem kind (used to keep the best retry)."""
        return round(self.wer + 0.1 * len(self.flags), 4)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["silences"] = [list(s) for s in self.silences]
        data["score"] = self.score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> QaReport | None:
        if not isinstance(data, dict) or "wer" not in data:
            return None
        return cls(
            str(data.get("transcript", "")),
            float(data["wer"]),
            tuple(data.get("dropped", ())),
            tuple(data.get("repeated", ())),
            bool(data.get("cut_off", False)),
            tuple(tuple(s) for s in data.get("silences", ())),
            tuple(data.get("flags", ())),
        )


def normalize_words(text: str) -> list[str]:
    """Words as the cleaners see them: ASCII, lower case, numbers and abbreviations spelled out, no
    punctuation and no [bracketed] prompt text."""
    text = re.sub(r"\[[^\]]*\]", " ", text or "")
    cleaned = english_cleaners(text).replace("-", " ")
    return [w.strip("'") for w in _NON_WORD_RE.sub(" ", cleaned).split() if w.strip("'")]


def align_words(reference: list[str], hypothesis: list[str]) -> list[tuple[str, str | None, str | None]]:
    """Levenshtein alignment: a list of (op, reference word, heard word), op in "=", "sub", "del", "ins"."""
    rows, cols = len(reference) + 1, len(hypothesis) + 1
    cost = np.zeros((rows, cols), dtype=np.int64)
    cost[:, 0] = np.arange(rows)
    cost[0, :] = np.arange(cols)
    for i in range(1, rows):
        for j in range(1, cols):
            same = reference[i - 1] == hypothesis[j - 1]
            cost[i, j] = min(cost[i - 1, j - 1] + (0 if same else 1), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = rows - 1, cols - 1
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            ops.append(
                ("=" if reference[i - 1] == hypothesis[j - 1] else "sub", reference[i - 1], hypothesis[j - 1])
            )
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            ops.append(("del", reference[i - 1], None))
            i -= 1
        else:
            ops.append(("ins", None, hypothesis[j - 1]))
            j -= 1
    return ops[::-1]


def find_silences(wav: np.ndarray, sample_rate: int, min_s: float) -> list[tuple[float, float]]:
    """Internal silent stretches at least `min_s` long (leading and trailing silence is not counted)."""
    frame = max(int(_FRAME_S * sample_rate), 1)
    count = len(wav) // frame
    if count < 3:
        return []
    rms = np.sqrt(np.mean(wav[: count * frame].reshape(count, frame) ** 2, axis=1) + 1e-12)
    silent = rms < rms.max() * 10 ** (_SILENCE_DB / 20)
    loud = np.flatnonzero(~silent)
    if len(loud) == 0:
        return []
    runs, start = [], None
    for index in range(loud[0], loud[-1] + 1):
        if silent[index] and start is None:
            start = index
        elif not silent[index] and start is not None:
            if (index - start) * _FRAME_S >= min_s:
                runs.append((round(start * _FRAME_S, 2), round(index * _FRAME_S, 2)))
            start = None
    return runs


def ends_abruptly(wav: np.ndarray, sample_rate: int) -> bool:
    """True when the last 20 ms are still loud (above a third of the loudest frame): cut mid-sound."""
    frame = max(int(_FRAME_S * sample_rate), 1)
    if len(wav) < 4 * frame:
        return False
    count = len(wav) // frame
    rms = np.sqrt(np.mean(wav[: count * frame].reshape(count, frame) ** 2, axis=1))
    tail = np.sqrt(np.mean(wav[-frame:] ** 2))
    return bool(tail > rms.max() / 3)


def score_take(
    text: str, transcript: str, wav: np.ndarray, sample_rate: int, settings: QaSettings
) -> QaReport:
    """Compare a take's transcript with its text and look at its audio.

    Args:
        text: what the take should say (prompt text; [brackets] are ignored).
        transcript: what the ASR heard.
        wav: the take, float mono samples.
        sample_rate: its rate in Hz.
        settings: thresholds.
    """
    reference, heard = normalize_words(text), normalize_words(transcript)
    ops = align_words(reference, heard)
    errors = sum(op != "=" for op, _, _ in ops)
    wer = errors / max(len(reference), 1)
    trailing = 0
    for op, _, _ in reversed(ops):
        if op != "del":
            break
        trailing += 1
    dropped = tuple(ref for op, ref, _ in ops[: len(ops) - trailing] if op == "del" and ref)
    heard_ops = [(op, word) for op, _, word in ops if word is not None]
    repeated = [
        word
        for index, (op, word) in enumerate(heard_ops)
        if op == "ins"
        and word in {heard_ops[i][1] for i in (index - 1, index + 1) if 0 <= i < len(heard_ops)}
    ]
    cut_off = trailing > 0 or ends_abruptly(wav, sample_rate)
    silences = tuple(find_silences(wav, sample_rate, settings.max_silence_s))
    flags = [
        name
        for name, hit in (
            (FLAG_DROPPED, dropped),
            (FLAG_REPEATED, repeated),
            (FLAG_CUT_OFF, cut_off),
            (FLAG_SILENCE, silences),
            (FLAG_WER, wer > settings.max_wer),
        )
        if hit
    ]
    return QaReport(
        transcript.strip(), round(wer, 4), dropped, tuple(repeated), cut_off, silences, tuple(flags)
    )


class SegmentChecker:
    """Transcribes and scores takes; the Whisper model is created and loaded on the first check.

    Args:
        transcriber: builds the Transcriber (the app passes one for the Settings' backend and model).
    """

    def __init__(self, transcriber: Callable[[], Transcriber]) -> None:
        self._factory = transcriber
        self._transcriber: Transcriber | None = None
        self._lock = threading.Lock()

    def check(
        self, text: str, wav: torch.Tensor | np.ndarray, sample_rate: int, settings: QaSettings
    ) -> QaReport:
        """Transcribe `wav` (mono, any rate) and score it against `text`.

        Raises:
            AsrUnavailable: the ASR backend or model cannot be loaded.
        """
        samples = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
        audio16 = resample_output(samples, sample_rate, ASR_SAMPLE_RATE).numpy()
        with self._lock:
            if self._transcriber is None:
                self._transcriber = self._factory()
            transcript = self._transcriber.transcribe(audio16, settings.language or "en").text
        return score_take(text, transcript, samples.double().numpy(), sample_rate, settings)

    def unload(self) -> None:
        with self._lock:
            if self._transcriber is not None:
                self._transcriber.unload()
