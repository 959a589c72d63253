"""VoiceLibrary: listing, names, clip checks, the per-model latents cache and its invalidation,
latents-only folders, blends, random and microphone."""

import os
import time

import pytest
import torch

from src.errors import InvalidInput, InvalidVoiceName, VoiceNotFound
from src.paths import AppPaths
from src.voices import (
    CACHE_VERSION,
    VoiceLibrary,
    VoiceUnusable,
    chunk_seconds,
    latents_cache_name,
    suggested_voice_chunks,
)
from tests.app_doubles import FakeTTS, make_voice, write_corrupt_clip, write_silent_clip
from tests.conftest import speech_like
from tortoise.audio import VOICE_SAMPLE_RATE, save_wav
from tortoise.latents import ConditioningLatents


@pytest.fixture
def paths(tmp_path):
    p = AppPaths.from_root(tmp_path)
    p.ensure()
    return p


@pytest.fixture
def library(paths):
    return VoiceLibrary(paths)


def test_list_voices_sorted_with_legacy_and_specials_last(paths, library):
    make_voice(paths.voices_dir, "zed", (1.0,))
    make_voice(paths.voices_dir, "Mary", (1.0,))
    make_voice(paths.legacy_voices_dir, "mary", (1.0,))
    make_voice(paths.legacy_voices_dir, "zed", (1.0,))  # same name in both: listed once
    (paths.voices_dir / ".temp").mkdir()
    (paths.voices_dir / "random").mkdir()  # reserved name: not listed as a folder voice
    (paths.voices_dir / "notes.txt").write_text("not a voice")
    assert library.list_voices() == ["Mary", "mary", "zed", "random", "microphone"]


def test_legacy_folder_wins_for_the_same_name(paths, library):
    make_voice(paths.voices_dir, "ann", (1.0,))
    legacy = make_voice(paths.legacy_voices_dir, "ann", (1.0, 1.0))
    assert library.voice_dir("ann") == legacy
    assert len(library.clip_files("ann")) == 2


@pytest.mark.parametrize("name", ["../etc", "a/b", "a\\b", "..", ".hidden", "", "random"])
def test_bad_names_are_refused(library, name):
    with pytest.raises(InvalidInput):
        library.voice_dir(name)


def test_unknown_voice_says_where_to_put_clips(library):
    with pytest.raises(VoiceNotFound, match="Put its clips in"):
        library.voice_dir("nobody")


def test_bad_clips_are_skipped_and_listed(paths, library):
    folder = make_voice(paths.voices_dir, "mixed", (1.5,))
    write_corrupt_clip(folder / "broken.wav")
    write_silent_clip(folder / "quiet.wav")
    save_wav(folder / "short.wav", speech_like(0.2), VOICE_SAMPLE_RATE)
    clips = library.load_clips("mixed")
    assert [f.name for f in clips.files] == ["clip1.wav"]
    text = " ".join(clips.skipped)
    assert "broken.wav: cannot be read" in text
    assert "quiet.wav: silent" in text
    assert "short.wav: too short" in text


def test_all_clips_bad_gives_one_clear_error(paths, library):
    folder = paths.voices_dir / "bad"
    folder.mkdir()
    write_corrupt_clip(folder / "a.wav")
    write_silent_clip(folder / "b.wav")
    with pytest.raises(VoiceUnusable) as caught:
        library.load_clips("bad")
    message = str(caught.value)
    assert "a.wav" in message and "b.wav" in message and "Traceback" not in message


def test_voice_with_no_clips_is_a_clear_error(paths, library):
    (paths.voices_dir / "empty").mkdir()
    with pytest.raises(VoiceUnusable, match="no audio"):
        library.conditioning("empty", FakeTTS())


def test_latents_are_cached_per_model_and_reused(paths, library):
    make_voice(paths.voices_dir, "amy", (1.5, 2.0))
    tts = FakeTTS(model_hash="aaaa1111")
    first = library.conditioning("amy", tts, voice_chunks=2)
    assert first.source == "computed" and len(tts.latents_calls) == 1
    cache = paths.voices_dir / "amy" / "cond_latents_aaaa1111.pth"
    assert cache.is_file()
    state = torch.load(cache, weights_only=True)
    assert state["cache_version"] == CACHE_VERSION and state["model_hash"] == "aaaa1111"
    assert [c[0] for c in state["clips"]] == ["clip1.wav", "clip2.wav"]
    again = library.conditioning("amy", tts, voice_chunks=2)
    assert again.source == "cache" and len(tts.latents_calls) == 1
    torch.testing.assert_close(again.latents.autoregressive, first.latents.autoregressive)
    assert again.sample is not None  # the preview still comes from the clips
    other = FakeTTS(model_hash="bbbb2222")
    assert library.conditioning("amy", other, voice_chunks=2).source == "computed"
    assert (paths.voices_dir / "amy" / "cond_latents_bbbb2222.pth").is_file()
    assert not list((paths.voices_dir / "amy").glob("*.tmp"))


def test_cache_invalidation(paths, library):
    folder = make_voice(paths.voices_dir, "bob", (1.5,))
    tts = FakeTTS()
    library.conditioning("bob", tts, slim=True)
    assert library.conditioning("bob", tts, slim=False).source == "computed"  # slim -> full
    assert library.conditioning("bob", tts, slim=False).source == "cache"
    assert library.conditioning("bob", tts, slim=False, voice_chunks=3).source == "computed"
    # a clip newer than the cache
    clip = folder / "clip1.wav"
    future = time.time() + 5
    os.utime(clip, (future, future))
    assert library.conditioning("bob", tts, slim=False, voice_chunks=3).source == "computed"
    # a clip added
    save_wav(folder / "clip9.wav", speech_like(1.0, seed=5), VOICE_SAMPLE_RATE)
    assert library.conditioning("bob", tts, slim=False, voice_chunks=3).source == "computed"
    # forced
    assert (
        library.conditioning("bob", tts, slim=False, voice_chunks=3, force=True).source
        == "computed"
    )
    # an old cache format
    cache = folder / latents_cache_name(tts.model_hash)
    state = torch.load(cache, weights_only=True)
    torch.save({**state, "cache_version": CACHE_VERSION - 1}, cache)
    assert library.conditioning("bob", tts, slim=False, voice_chunks=3).source == "computed"


def test_unreadable_cache_is_recomputed_not_a_crash(paths, library):
    folder = make_voice(paths.voices_dir, "cat", (1.5,))
    tts = FakeTTS()
    (folder / latents_cache_name(tts.model_hash)).write_bytes(b"garbage, not a torch file")
    result = library.conditioning("cat", tts)
    assert result.source == "computed"
    assert library.conditioning("cat", tts).source == "cache"


def test_cache_holding_code_is_refused_and_recomputed(paths, library):
    folder = make_voice(paths.voices_dir, "evil", (1.5,))
    tts = FakeTTS()
    torch.save(
        {"autoregressive": torch.zeros(1, 4), "diffusion": torch.zeros(1, 4), "x": object()},
        folder / latents_cache_name(tts.model_hash),
    )
    assert library.conditioning("evil", tts).source == "computed"


def test_voice_chunks_set_the_chunk_length(paths, library):
    make_voice(paths.voices_dir, "dan", (2.0, 2.0))
    tts = FakeTTS()
    library.conditioning("dan", tts, voice_chunks=4, max_chunk_s=10.0)
    assert tts.latents_kwargs[-1]["max_chunk_s"] == pytest.approx(1.0, rel=1e-3)
    assert chunk_seconds(100.0, 0, 10.0) == 10.0  # automatic: the setting
    assert chunk_seconds(100.0, 2, 10.0) == 10.0  # never above the setting


def test_suggested_voice_chunks_from_clip_count(paths, library):
    make_voice(paths.voices_dir, "eve", (1.0, 1.0, 1.0))
    assert library.suggest_voice_chunks("eve") == 3
    assert library.suggest_voice_chunks("random") == 1
    assert library.suggest_voice_chunks("microphone") == 1
    assert library.suggest_voice_chunks("nobody") == 1
    assert suggested_voice_chunks(0) == 1


def test_folder_with_only_a_latents_file(paths, library):
    folder = paths.voices_dir / "imported"
    folder.mkdir()
    saved = ConditioningLatents(torch.ones(1, 16), torch.ones(1, 32), None, "imported")
    torch.save(
        (saved.autoregressive, saved.diffusion), folder / "cond_latents.pth"
    )  # mrq's tuple format
    result = library.conditioning("imported", FakeTTS())
    assert result.source == "latents file" and result.sample is None
    torch.testing.assert_close(result.latents.autoregressive, saved.autoregressive)
    assert any("latents file" in note for note in result.notes)


def test_unreadable_latents_only_folder_is_a_clear_error(paths, library):
    folder = paths.voices_dir / "broken"
    folder.mkdir()
    (folder / "cond_latents.pth").write_bytes(b"nope")
    with pytest.raises(VoiceUnusable, match="cond_latents.pth"):
        library.conditioning("broken", FakeTTS())


def test_blend_averages_the_voices(paths, library):
    make_voice(paths.voices_dir, "a", (1.5,), seed=1)
    make_voice(paths.voices_dir, "b", (1.5,), seed=7)
    tts = FakeTTS()
    a = library.conditioning("a", tts).latents
    b = library.conditioning("b", tts).latents
    blend = library.conditioning("a&b", tts)
    assert blend.source == "blend"
    torch.testing.assert_close(
        blend.latents.autoregressive, (a.autoregressive + b.autoregressive) / 2
    )
    with pytest.raises(InvalidInput, match="blend"):
        library.conditioning("a&random", tts)
    with pytest.raises(VoiceNotFound):
        library.conditioning("a&nobody", tts)


def test_random_voice_is_repeatable_with_a_seed_and_not_embedded(library):
    tts = FakeTTS()
    one = library.conditioning("random", tts, seed=5)
    two = library.conditioning("random", tts, seed=5)
    torch.testing.assert_close(one.latents.autoregressive, two.latents.autoregressive)
    assert one.embed_latents is False and one.sample is None


def test_microphone_needs_a_recording_and_is_never_cached(paths, library, tmp_path):
    tts = FakeTTS()
    with pytest.raises(InvalidInput, match="no recording"):
        library.conditioning("microphone", tts, mic_audio=None)
    silent = write_silent_clip(tmp_path / "silent.wav")
    with pytest.raises(InvalidInput, match="silent"):
        library.conditioning("microphone", tts, mic_audio=str(silent))
    recording = tmp_path / "mic.wav"
    save_wav(recording, speech_like(1.5), 48000)
    result = library.conditioning("microphone", tts, mic_audio=str(recording))
    assert result.source == "microphone" and result.sample.shape[-1] > 0
    assert not (paths.voices_dir / "microphone").exists()


def test_empty_voice_name(library):
    with pytest.raises(InvalidInput, match="Please provide a voice"):
        library.conditioning("  ", FakeTTS())


def test_invalid_name_error_is_plain(library):
    with pytest.raises(InvalidVoiceName, match="cannot be used as a voice name"):
        library.conditioning("../../etc", FakeTTS())
