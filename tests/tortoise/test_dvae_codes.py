"""Batched clip -> DVAE codes and its on-disk cache: hits, invalidation, corruption, atomic writes."""

import logging
import shutil

import pytest
import torch
from torch import nn

from tests.conftest import speech_like
from tortoise.audio import VOICE_SAMPLE_RATE, load_audio, pad_or_truncate, save_wav
from tortoise.dvae_codes import (
    CACHE_SUFFIX,
    DLAS_PADDED_SAMPLES,
    codes_for_wavs,
    encode_clips,
    num_codes,
)
from tortoise.errors import AudioLoadError, InvalidInputError
from tortoise.models import load

PADDED = 16384  # a short padding keeps the tests fast; the codes depend on it like on DLAS's 255995
HASH = "dvae-sha256-a"


class CountingDVAE(nn.Module):
    """Wraps a DVAE and counts how often, and on how many clips, it is asked for codes."""

    def __init__(self, dvae: nn.Module):
        super().__init__()
        self.dvae = dvae
        self.calls = 0
        self.clips = 0

    def get_codebook_indices(self, mel: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.clips += mel.shape[0]
        return self.dvae.get_codebook_indices(mel)


@pytest.fixture(scope="module")
def tiny_dvae(golden):
    gold = golden("dvae.pt")
    return load("dvae", gold["state_dict"], **gold["constructor_args"])


@pytest.fixture
def dvae(tiny_dvae):
    return CountingDVAE(tiny_dvae)


@pytest.fixture(scope="module")
def mel_norms(mel_norms_path):
    return torch.load(mel_norms_path, weights_only=True)


@pytest.fixture
def dataset(tmp_path):
    """A dataset folder with five clips of different lengths and its cache folder."""
    folder = tmp_path / "voice"
    paths = []
    for i, seconds in enumerate((0.3, 0.5, 0.7, 0.45, 0.6)):
        path = folder / "audio" / f"clip_{i}.wav"
        save_wav(path, speech_like(seconds, seed=i), VOICE_SAMPLE_RATE)
        paths.append(path)
    return folder, paths


def encode(dvae, paths, cache, mel_norms, **kwargs):
    kwargs = {"dvae_hash": HASH, "batch_size": 2, "padded_samples": PADDED, **kwargs}
    return encode_clips(dvae, paths, cache, mel_norms=mel_norms, **kwargs)


def cache_files(cache):
    return sorted(p.name for p in cache.iterdir())


def test_num_codes_follows_the_dlas_geometry():
    assert num_codes(DLAS_PADDED_SAMPLES) == 250
    assert num_codes(9300) == 10  # 37 frames -> 19 -> 10, as in the golden fixture


def test_codes_equal_a_direct_encode_of_each_padded_clip(dvae, dataset, mel_norms):
    folder, paths = dataset
    got = encode(dvae, paths, folder / "cache", mel_norms)
    assert list(got) == [str(p) for p in paths]
    for path in paths:
        wav = pad_or_truncate(load_audio(path, VOICE_SAMPLE_RATE), PADDED)
        expected = codes_for_wavs(dvae.dvae, wav, mel_norms)[0]
        assert got[str(path)].dtype == torch.int64
        assert got[str(path)].shape == (num_codes(PADDED),)
        assert torch.equal(got[str(path)], expected)


def test_second_call_is_served_from_the_cache(dvae, dataset, mel_norms):
    folder, paths = dataset
    cache = folder / "cache"
    first = encode(dvae, paths, cache, mel_norms)
    assert (dvae.calls, dvae.clips) == (3, 5)  # batches of 2, 2, 1
    assert len(cache_files(cache)) == 5 and all(n.endswith(CACHE_SUFFIX) for n in cache_files(cache))
    second = encode(dvae, paths, cache, mel_norms)
    assert (dvae.calls, dvae.clips) == (3, 5)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_batch_size_does_not_change_the_codes(dvae, dataset, mel_norms, tmp_path):
    folder, paths = dataset
    batched = encode(dvae, paths, tmp_path / "a", mel_norms, batch_size=5)
    single = encode(dvae, paths, tmp_path / "b", mel_norms, batch_size=1)
    assert all(torch.equal(batched[k], single[k]) for k in batched)


def test_a_changed_clip_is_encoded_again(dvae, dataset, mel_norms):
    folder, paths = dataset
    cache = folder / "cache"
    before = encode(dvae, paths, cache, mel_norms)
    calls = dvae.clips
    # Same length, new content: caught by the content hash, whatever the file system's mtime resolution.
    save_wav(paths[2], 0.3 * torch.randn(1, int(0.7 * VOICE_SAMPLE_RATE)).clamp(-1, 1), VOICE_SAMPLE_RATE)
    after = encode(dvae, paths, cache, mel_norms)
    assert dvae.clips == calls + 1
    assert not torch.equal(before[str(paths[2])], after[str(paths[2])])
    assert len(cache_files(cache)) == 5  # the entry was replaced, not added


@pytest.mark.parametrize(
    "change",
    [{"dvae_hash": "dvae-sha256-b"}, {"padded_samples": PADDED + 4096}, {"mel_norms": "scaled"}],
    ids=["dvae_hash", "padding", "mel_norms"],
)
def test_a_different_dvae_or_front_end_invalidates_every_entry(change, dvae, dataset, mel_norms):
    folder, paths = dataset
    cache = folder / "cache"
    encode(dvae, paths, cache, mel_norms)
    if change.get("mel_norms") == "scaled":
        change = {"mel_norms": mel_norms * 1.01}
    encode(dvae, paths, cache, **{"mel_norms": mel_norms, **change})
    assert dvae.clips == 10
    encode(dvae, paths, cache, **{"mel_norms": mel_norms, **change})  # and the new entries are cached
    assert dvae.clips == 10


@pytest.mark.parametrize(
    "damage",
    ["empty", "truncated", "garbage", "not_a_dict", "bad_codes", "pickled_code"],
)
def test_a_damaged_cache_file_is_rebuilt(damage, dvae, dataset, mel_norms, caplog):
    folder, paths = dataset
    cache = folder / "cache"
    expected = encode(dvae, paths, cache, mel_norms)
    victim = sorted(cache.iterdir())[0]
    data = victim.read_bytes()
    if damage == "empty":
        victim.write_bytes(b"")
    elif damage == "truncated":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        victim.write_bytes(b"\x00not a torch file" * 50)
    elif damage == "not_a_dict":
        torch.save(torch.arange(5), victim)
    elif damage == "bad_codes":
        state = torch.load(victim, weights_only=True)
        torch.save({**state, "codes": state["codes"].float()}, victim)
    else:
        torch.save({"codes": logging.getLogger}, victim)  # weights_only refuses to unpickle this
    with caplog.at_level(logging.WARNING, logger="tortoise.dvae_codes"):
        got = encode(dvae, paths, cache, mel_norms)
    assert dvae.clips == 6  # only the damaged entry
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    encode(dvae, paths, cache, mel_norms)
    assert dvae.clips == 6  # and it was written back in good order


def test_moving_the_dataset_folder_keeps_the_cache(dvae, dataset, mel_norms, tmp_path):
    folder, paths = dataset
    encode(dvae, paths, folder / "cache", mel_norms)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    encode(dvae, [moved / p.relative_to(folder) for p in paths], moved / "cache", mel_norms)
    assert dvae.clips == 5


def test_duplicates_progress_and_no_temp_files(dvae, dataset, mel_norms):
    folder, paths = dataset
    cache = folder / "cache"
    seen = []

    def record(done, total):
        seen.append((done, total))

    got = encode(dvae, [paths[0], paths[1], paths[0]], cache, mel_norms, progress=record)
    assert list(got) == [str(paths[0]), str(paths[1])]
    assert dvae.clips == 2
    assert seen == [(0, 2), (2, 2)]
    seen.clear()
    encode(dvae, paths, cache, mel_norms, progress=record)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert not [n for n in cache_files(cache) if not n.endswith(CACHE_SUFFIX)]


def test_an_unwritable_cache_only_warns(dvae, dataset, mel_norms, monkeypatch, caplog):
    folder, paths = dataset
    cache = folder / "cache"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with caplog.at_level(logging.WARNING, logger="tortoise.dvae_codes"):
        got = encode(dvae, paths, cache, mel_norms)
    assert len(got) == 5 and "disk full" in caplog.text
    assert cache_files(cache) == []  # no temp files left behind


def test_missing_too_long_clip_and_bad_batch_size_are_clear_errors(dvae, dataset, mel_norms):
    folder, paths = dataset
    with pytest.raises(InvalidInputError, match="clip_2.wav"):
        encode(dvae, paths, folder / "cache", mel_norms, padded_samples=12000)
    with pytest.raises(InvalidInputError, match="batch_size"):
        encode(dvae, paths, folder / "cache", mel_norms, batch_size=0)
    with pytest.raises(AudioLoadError, match="missing.wav"):
        encode(dvae, [folder / "missing.wav"], folder / "cache", mel_norms)
