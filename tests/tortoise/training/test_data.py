"""Training data: list parsing, §2 rejections, text mapping, items and batches, the resumable sampler."""

import os

import pytest
import torch

from tests.conftest import speech_like
from tortoise.audio import VOICE_SAMPLE_RATE, save_wav
from tortoise.tokenizer import VoiceBpeTokenizer
from tortoise.training.data import (
    REJECT_EMPTY_TEXT,
    REJECT_LONG,
    REJECT_LONG_TEXT,
    REJECT_MODEL_LIMIT,
    REJECT_SHORT,
    REJECT_UNKNOWN_CHARS,
    REJECT_UNREADABLE,
    EpochBatchSampler,
    PairedVoiceDataset,
    collate,
    encode_text,
    prepare_clips,
    read_list,
)
from tortoise.training.errors import DatasetError


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return VoiceBpeTokenizer(tokenizer_path)


def _clip(folder, name, seconds, seed=0):
    save_wav(folder / name, speech_like(seconds, VOICE_SAMPLE_RATE, seed), VOICE_SAMPLE_RATE)
    return name


def test_read_list_resolves_paths_and_uses_two_fields(tmp_path):
    text = "audio/a.wav|Hello there|extra\n\n b.wav |  Hi  \nc.wav"
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    items = read_list(tmp_path / "train.txt")
    assert items == [(tmp_path / "audio/a.wav", "Hello there"), (tmp_path / "b.wav", "Hi"),
                     (tmp_path / "c.wav", "")]


@pytest.mark.parametrize("content", [None, "", "\n \n"])
def test_read_list_missing_or_empty_is_a_dataset_error(tmp_path, content):
    if content is not None:
        (tmp_path / "train.txt").write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match="Prepare Dataset"):
        read_list(tmp_path / "train.txt")


def test_text_mapping_brackets_and_backticks(tokenizer):
    assert encode_text(tokenizer, "a [b] {c} it`s") == encode_text(tokenizer, "a (b) (c) it's")
    assert 1 not in encode_text(tokenizer, "a [b]")


def test_prepare_clips_rejects_per_spec_and_counts(tmp_path, tokenizer):
    lines = [
        f"{_clip(tmp_path, 'ok.wav', 1.0)}|A good line.",
        f"{_clip(tmp_path, 'empty.wav', 1.0)}|",
        f"{_clip(tmp_path, 'short.wav', 0.5)}|Too short.",
        f"{_clip(tmp_path, 'long.wav', 11.7)}|Too long.",
        f"{_clip(tmp_path, 'unk.wav', 1.0)}|Fifty % off.",
        f"{_clip(tmp_path, 'text.wav', 1.0)}|{'word ' * 150}",
        "missing.wav|No file.",
        f"{_clip(tmp_path, 'model.wav', 3.0)}|Too long for a tiny model.",
    ]
    (tmp_path / "train.txt").write_text("\n".join(lines), encoding="utf-8")
    clips, rejected = prepare_clips(tmp_path / "train.txt", tokenizer, max_codes=50)
    assert [c.audio.name for c in clips] == ["ok.wav"]
    assert clips[0].samples == VOICE_SAMPLE_RATE and clips[0].wav is not None
    assert rejected == {REJECT_EMPTY_TEXT: 1, REJECT_SHORT: 1, REJECT_LONG: 1, REJECT_UNKNOWN_CHARS: 1,
                        REJECT_LONG_TEXT: 1, REJECT_UNREADABLE: 1, REJECT_MODEL_LIMIT: 1}


def test_prepare_clips_without_preload_keeps_no_audio(tmp_path, tokenizer):
    (tmp_path / "train.txt").write_text(f"{_clip(tmp_path, 'a.wav', 1.0)}|Hello.", encoding="utf-8")
    clips, _ = prepare_clips(tmp_path / "train.txt", tokenizer, preload_budget_bytes=0)
    assert clips[0].wav is None


def test_items_and_collate_shapes(tmp_path, tokenizer, mel_norms_path):
    lines = [f"{_clip(tmp_path, 'a.wav', 1.0)}|Hello.", f"{_clip(tmp_path, 'b.wav', 3.0, 1)}|A longer line."]
    (tmp_path / "train.txt").write_text("\n".join(lines), encoding="utf-8")
    clips, _ = prepare_clips(tmp_path / "train.txt", tokenizer, preload_budget_bytes=0)
    codes = {os.fspath(c.audio): torch.randint(0, 8192, (250,)) for c in clips}
    norms = torch.load(mel_norms_path, weights_only=True)
    data = PairedVoiceDataset(clips, codes, norms, torch.Generator().manual_seed(0))
    batch = collate([data[0], data[1]])
    assert batch["cond_mels"].shape == (2, 2, 80, 172)
    assert batch["codes"].shape == (2, 250)
    assert batch["text"].shape == (2, int(batch["text_length"].max()))
    assert batch["wav_length"].tolist() == [22050, 66150]
    assert not torch.equal(batch["cond_mels"][1, 0], batch["cond_mels"][1, 1])  # two random crops
    with pytest.raises(DatasetError, match="No DVAE codes"):
        PairedVoiceDataset(clips, {}, norms)


def test_sampler_is_seeded_resumable_and_sharded():
    sampler = EpochBatchSampler(10, 4, drop_last=True, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    assert len(full) == 2 and all(len(b) == 4 for b in full)
    sampler.set_epoch(2, start_batch=1)
    assert list(sampler) == full[1:]
    sampler.set_epoch(3)
    assert list(sampler) != full
    shards = [EpochBatchSampler(10, 4, drop_last=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(2)
    a, b = (list(s) for s in shards)
    assert [sorted(x + y) for x, y in zip(a, b)] == [sorted(batch) for batch in full]
    keep_last = EpochBatchSampler(10, 4, drop_last=False)
    assert keep_last.batches_per_epoch == 3 and [len(b) for b in keep_last] == [4, 4, 2]


def test_short_last_batch_gives_every_process_the_same_count():
    shards = [EpochBatchSampler(5, 4, drop_last=False, rank=r, world_size=2) for r in (0, 1)]
    a, b = (list(s) for s in shards)
    assert [len(x) for x in a] == [len(x) for x in b] == [2, 1]
