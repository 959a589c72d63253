"""Training data: LJSpeech-style lists -> filtered clips (TRAINING_SPEC §2) with BPE text, cached DVAE
codes and two random conditioning crops per item; batches in a seeded, resumable, shardable order.
"""

from __future__ import annotations

import collections
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from tortoise.audio import VOICE_SAMPLE_RATE, load_audio
from tortoise.errors import AudioLoadError
from tortoise.mel import compute_ar_mel
from tortoise.tokenizer import STOP_TOKEN_ID, UNK_TOKEN_ID, VoiceBpeTokenizer
from tortoise.training.errors import DatasetError

log = logging.getLogger(__name__)

MIN_SAMPLES = 13230  # 0.6 s at 22.05 kHz: DLAS skipped shorter clips
MAX_SAMPLES = 255995  # DLAS max_wav_length (11.61 s); every target wav is zero-padded to this
MAX_TEXT_TOKENS = 200  # DLAS max_text_length
CONDITIONING_CLIPS = 2  # num_conditioning_candidates
CONDITIONING_SAMPLES = 44000  # conditioning_length: 2.0 s -> 172 mel frames
PRELOAD_BUDGET_BYTES = 256 << 20  # keep decoded clips in memory when they fit in this
# DLAS's extra text mapping after english_cleaners; the cleaners already turned ʼ and em dashes into
# ASCII, so only these characters remain to map.
_PUNCTUATION = str.maketrans({"{": "(", "}": ")", "[": "(", "]": ")", "`": "'"})

REJECT_EMPTY_TEXT = "empty transcript"
REJECT_SHORT = "audio shorter than 0.6 s"
REJECT_LONG = "audio longer than 11.6 s"
REJECT_UNKNOWN_CHARS = "characters the tokenizer does not know"
REJECT_LONG_TEXT = f"transcript longer than {MAX_TEXT_TOKENS} tokens"
REJECT_MODEL_LIMIT = "longer than the model's position tables"
REJECT_UNREADABLE = "audio file missing or unreadable"


@dataclass(frozen=True)
class Clip:
    """One usable list item.

    Attributes:
        audio: the clip's path as resolved from the list. text: the transcript as written.
        tokens: BPE ids (no start/stop). samples: length at 22.05 kHz.
        wav: the decoded clip (1, samples) when the dataset is small enough to keep in memory.
    """

    audio: Path
    text: str
    tokens: tuple[int, ...]
    samples: int
    wav: torch.Tensor | None = None


def read_list(path: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """(audio path, transcript) per non-empty line of an LJSpeech list; paths relative to its folder.

    Only the first two `|` fields are used; a line without `|` has an empty transcript.

    Raises:
        DatasetError: the list is missing or has no lines.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise DatasetError(f"Dataset list {path} not found; run Prepare Dataset for this voice.") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"Dataset list {path} cannot be read ({e}); run Prepare Dataset again.") from e
    items = []
    for line in lines:
        if not line.strip():
            continue
        audio, _, rest = line.partition("|")
        items.append((path.parent / audio.strip(), rest.split("|")[0].strip()))
    if not items:
        raise DatasetError(f"Dataset list {path} is empty; run Prepare Dataset with audio that has speech.")
    return items


def encode_text(tokenizer: VoiceBpeTokenizer, text: str) -> list[int]:
    """BPE ids as DLAS made them: english_cleaners, the bracket/backtick mapping, then BPE.

    The tokenizer cleans again; english_cleaners is idempotent, so this equals cleaning once.
    """
    return tokenizer.encode(tokenizer.clean(text).translate(_PUNCTUATION))


def prepare_clips(
    list_path: str | os.PathLike[str],
    tokenizer: VoiceBpeTokenizer,
    *,
    max_text_tokens: int = MAX_TEXT_TOKENS,
    max_codes: int | None = None,
    tortoise_compat: bool = False,
    preload_budget_bytes: int = PRELOAD_BUDGET_BYTES,
) -> tuple[list[Clip], collections.Counter[str]]:
    """Read a list and keep the items DLAS would train on (TRAINING_SPEC §2), logging each rejection.

    Args:
        list_path: train.txt or validation.txt.
        tokenizer: the TorToiSe tokenizer.
        max_text_tokens: longest transcript kept (the smaller of DLAS's 200 and the model's table).
        max_codes: most mel codes the model's position table takes (start/stop excluded); None = no limit.
        tortoise_compat: items then train on every code of the padded clip, so all must fit max_codes.
        preload_budget_bytes: decoded clips are kept in memory when all of them fit in this.

    Returns:
        The usable clips in list order and a Counter of rejection reasons.

    Raises:
        DatasetError: the list is missing or empty.
    """
    rejected: collections.Counter[str] = collections.Counter()
    clips: list[Clip] = []
    budget = preload_budget_bytes
    for audio, text in read_list(list_path):
        reason, tokens, wav = _check_item(audio, text, tokenizer, max_text_tokens, max_codes, tortoise_compat)
        if reason is not None:
            rejected[reason] += 1
            log.warning("Skipping %s: %s", audio, reason)
            continue
        budget -= wav.numel() * wav.element_size()
        clips.append(Clip(audio, text, tuple(tokens), wav.shape[-1], wav if budget >= 0 else None))
    if budget < 0:  # too big to hold: every item decodes its clip when it is used
        clips = [Clip(c.audio, c.text, c.tokens, c.samples) for c in clips]
    summary = ", ".join(f"{n} {reason}" for reason, n in rejected.most_common()) or "none"
    log.info("%s: %d usable clips; rejected: %s", list_path, len(clips), summary)
    return clips, rejected


def _check_item(audio, text, tokenizer, max_text_tokens, max_codes, tortoise_compat):
    """(rejection reason or None, tokens, wav)."""
    if not text:
        return REJECT_EMPTY_TEXT, [], None
    tokens = encode_text(tokenizer, text)
    if not tokens:
        return REJECT_EMPTY_TEXT, [], None
    if STOP_TOKEN_ID in tokens or UNK_TOKEN_ID in tokens:
        return REJECT_UNKNOWN_CHARS, tokens, None
    if len(tokens) > MAX_TEXT_TOKENS:
        return REJECT_LONG_TEXT, tokens, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "silent or wrongly scaled" warning; still clipped
            wav = load_audio(audio, VOICE_SAMPLE_RATE)
    except AudioLoadError as e:
        log.warning("%s", e)
        return REJECT_UNREADABLE, tokens, None
    samples = wav.shape[-1]
    if samples < MIN_SAMPLES:
        return REJECT_SHORT, tokens, None
    if samples > MAX_SAMPLES:
        return REJECT_LONG, tokens, None
    codes = MAX_SAMPLES // 1024 + 1 if tortoise_compat else samples // 1024 + 1
    if len(tokens) > max_text_tokens or (max_codes is not None and codes > max_codes):
        return REJECT_MODEL_LIMIT, tokens, None
    return None, tokens, wav


class PairedVoiceDataset(Dataset):
    """Items of (text, codes, conditioning mels) for the AR training forward.

    Args:
        clips: from `prepare_clips`.
        codes: {os.fspath(clip.audio): int64 (250,)} DVAE codes of each clip zero-padded to 255995 samples.
        mel_norms: (80,) AR mel divisors.
        generator: random source of the conditioning crops (None = torch's global generator, which
            DataLoader workers seed per worker).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        codes: dict[str, torch.Tensor],
        mel_norms: torch.Tensor,
        generator: torch.Generator | None = None,
    ):
        missing = [c.audio for c in clips if os.fspath(c.audio) not in codes]
        if missing:
            raise DatasetError(f"No DVAE codes for {len(missing)} clip(s), e.g. {missing[0]}.")
        self.clips = list(clips)
        self.codes = codes
        self.mel_norms = mel_norms
        self.generator = generator

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        wav = clip.wav if clip.wav is not None else load_audio(clip.audio, VOICE_SAMPLE_RATE)
        crops = torch.stack([self._crop(wav[0]) for _ in range(CONDITIONING_CLIPS)])  # (2, 44000)
        return {
            "text": torch.tensor(clip.tokens, dtype=torch.long),
            "text_length": torch.tensor(len(clip.tokens)),
            "codes": self.codes[os.fspath(clip.audio)],
            "wav_length": torch.tensor(clip.samples),
            "cond_mels": compute_ar_mel(crops, self.mel_norms),  # (2, 80, 172)
        }

    def _crop(self, wav: torch.Tensor) -> torch.Tensor:
        """A uniformly placed 44000-sample window of the clip, zero-padded at the end when shorter."""
        gap = wav.shape[-1] - CONDITIONING_SAMPLES
        if gap <= 0:
            return F.pad(wav, (0, -gap))
        start = int(torch.randint(0, gap + 1, (1,), generator=self.generator))
        return wav[start : start + CONDITIONING_SAMPLES]


def collate(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items; text is zero-padded to the longest in the batch (the forward cuts to it anyway)."""
    longest = max(int(item["text_length"]) for item in items)
    return {
        "text": torch.stack([F.pad(i["text"], (0, longest - i["text"].numel())) for i in items]),
        "text_length": torch.stack([i["text_length"] for i in items]),
        "codes": torch.stack([i["codes"] for i in items]),
        "wav_length": torch.stack([i["wav_length"] for i in items]),
        "cond_mels": torch.stack([i["cond_mels"] for i in items]),
    }


class EpochBatchSampler(Sampler[list[int]]):
    """Per-epoch shuffled batches: the same order on every process (seed + epoch), each process taking
    its share of every global batch, and a start offset so a resumed run skips the batches it did.

    Args:
        size: items in the dataset.
        batch_size: global batch (all processes); a multiple of `world_size`.
        drop_last: drop the last partial batch (DLAS) or keep it.
        seed: base seed of the shuffles.
        rank, world_size: this process and the process count.
    """

    def __init__(self, size: int, batch_size: int, drop_last: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.size, self.batch_size, self.drop_last = size, batch_size, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        whole, rest = divmod(self.size, self.batch_size)
        return whole if self.drop_last or rest == 0 else whole + 1

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Choose the epoch's shuffle and the first batch to yield."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for b in range(self.start_batch, self.batches_per_epoch):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            per_process = -(-len(batch) // self.world_size)
            # a short last batch is topped up from its own start, so every process gets as many items
            padded = (batch * self.world_size)[: per_process * self.world_size]
            yield padded[self.rank :: self.world_size]
