"""Utilities service: reading an upload's settings, exporting embedded latents outside voices/,
refusing unsafe latents without running them, and importing voices from clips or latents."""

import numpy as np
import pytest
import soundfile as sf
import torch

from src.errors import InvalidInput, InvalidVoiceName, UnsafeLatents
from src.paths import AppPaths
from src.utilities import (
    VoiceExists,
    import_voice,
    inspect_upload,
    suggest_voice_name,
)
from src.voices import VoiceLibrary
from tests.app_doubles import FakeTTS, make_voice, write_silent_clip
from tests.conftest import speech_like
from tests.generated_files import (
    malicious_latents_b64,
    metadata,
    tiny_latents,
    with_latents,
    write_generated,
)
from tests.media import assert_voice_wav, make_mp3_stereo_44k


@pytest.fixture
def paths(tmp_path):
    paths = AppPaths.from_root(tmp_path / "app")
    paths.ensure()
    return paths


@pytest.fixture
def uploads(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


def no_staging_left(paths):
    return not [p for p in paths.voices_dir.iterdir() if p.name.startswith(".import-")]


def test_upload_with_metadata_and_latents(paths, uploads, tmp_path):
    latents = tiny_latents(3)
    clip = write_generated(uploads / "result.wav", with_latents(metadata(), latents))
    info = inspect_upload(paths, clip, tmp_path / "exports")
    assert info.metadata.seed == 1234 and info.latents_problem is None
    display = info.metadata.to_display_dict()
    assert "latents" not in display and display["time"] == "1.235"
    assert info.latents_file.name == "cond_latents.pth"
    assert info.latents_file.is_relative_to(tmp_path / "exports")
    assert not info.latents_file.is_relative_to(paths.root)  # never under voices/
    state = torch.load(info.latents_file, weights_only=True)
    assert torch.equal(state["autoregressive"], latents.autoregressive)
    assert info.suggested_voice == "amy"
    assert list(paths.voices_dir.iterdir()) == []


def test_upload_without_metadata(paths, uploads, tmp_path):
    clip = write_generated(uploads / "My Clip.wav")
    info = inspect_upload(paths, clip, tmp_path / "exports")
    assert info.metadata is None and info.latents_file is None and info.latents_problem is None
    assert info.suggested_voice == "My Clip"


def test_sidecar_json_upload_is_read(paths, uploads, tmp_path):
    write_generated(uploads / "x.wav", metadata(seed=5), embed=False)
    info = inspect_upload(paths, uploads / "x.json", tmp_path / "exports")
    assert info.metadata.seed == 5 and info.latents_file is None


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_malicious_latents_are_refused_and_nothing_runs(paths, uploads, tmp_path, container):
    marker = tmp_path / "pwned.txt"
    meta = metadata(latents=malicious_latents_b64(marker, container=container))
    clip = write_generated(uploads / "evil.wav", meta)
    info = inspect_upload(paths, clip, tmp_path / "exports")
    assert info.metadata.seed == 1234  # the settings are still shown
    assert info.latents_file is None and "could run code" in info.latents_problem
    with pytest.raises(UnsafeLatents):
        import_voice(paths, "evil", [clip])
    assert not marker.exists()
    assert not (paths.voices_dir / "evil").exists() and no_staging_left(paths)
    assert not list(tmp_path.rglob("*.pth"))  # nothing was exported


def test_suggested_names_are_free_and_safe(paths):
    make_voice(paths.voices_dir, "amy", (0.6,))
    assert suggest_voice_name(paths, "amy") == "amy_2"
    assert suggest_voice_name(paths, "AMY") == "AMY_2"  # case-insensitive file systems
    assert suggest_voice_name(paths, "../../etc/passwd") == "_.._etc_passwd"
    assert suggest_voice_name(paths, ".temp") == "temp"
    assert suggest_voice_name(paths, "random") == "random_2"
    assert suggest_voice_name(paths, "") == "voice"
    assert len(suggest_voice_name(paths, "x" * 300)) <= 100


def test_import_clips_converts_to_22k_mono_wav(paths, uploads):
    stereo = uploads / "take one.wav"
    left, right = speech_like(1.0, 44100, seed=1), speech_like(1.0, 44100, seed=2)
    sf.write(stereo, torch.cat([left, right]).T.numpy(), 44100, subtype="PCM_24")
    flac = uploads / "take.flac"
    sf.write(flac, speech_like(0.8, 16000, seed=3)[0].numpy(), 16000)
    short = uploads / "blip.wav"
    sf.write(short, np.zeros(2000) + 0.1, 22050)
    silent = write_silent_clip(uploads / "quiet.wav")
    notes_json = uploads / "settings.json"
    notes_json.write_text("{}")

    result = import_voice(paths, "  new voice ", [stereo, flac, short, silent, notes_json])
    assert result.voice == "new voice" and result.source == "clips"
    assert [p.name for p in result.files] == ["take one.wav", "take.wav"]
    for path in result.files:
        assert path.parent == paths.voices_dir / "new voice"
        assert_voice_wav(path)
    assert len(result.notes) == 3 and "blip.wav: too short" in result.notes[0]
    assert "quiet.wav: silent" in result.notes[1] and "settings.json" in result.notes[2]
    library = VoiceLibrary(paths)
    assert "new voice" in library.list_voices()
    assert len(library.load_clips("new voice").clips) == 2
    assert no_staging_left(paths)


def test_import_mp3_clip(paths, uploads):
    mp3 = make_mp3_stereo_44k(uploads / "talk.mp3", duration_s=1.0)
    result = import_voice(paths, "mp3voice", [mp3])
    assert [p.name for p in result.files] == ["talk.wav"]
    assert_voice_wav(result.files[0])


def test_same_clip_names_get_numbered(paths, tmp_path):
    clips = []
    for i in range(2):
        folder = tmp_path / f"u{i}"
        folder.mkdir()
        clips.append(folder / "clip.wav")
        sf.write(clips[-1], speech_like(0.7, 22050, seed=i)[0].numpy(), 22050)
    result = import_voice(paths, "twins", clips)
    assert [p.name for p in result.files] == ["clip.wav", "clip_2.wav"]


def test_import_from_embedded_latents(paths, uploads):
    latents = tiny_latents(4)
    clip = write_generated(uploads / "result.wav", with_latents(metadata(), latents))
    result = import_voice(paths, "from latents", [clip])
    assert result.source == "latents"
    assert [p.name for p in result.files] == ["cond_latents.pth"]
    found = VoiceLibrary(paths).conditioning("from latents", FakeTTS())
    assert found.source == "latents file"
    assert torch.equal(found.latents.autoregressive, latents.autoregressive)


def test_embedded_latents_can_be_skipped_to_import_the_audio(paths, uploads):
    clip = write_generated(uploads / "result.wav", with_latents(metadata()))
    result = import_voice(paths, "as audio", [clip], use_embedded_latents=False)
    assert result.source == "clips" and [p.name for p in result.files] == ["result.wav"]


def test_several_generated_files_are_imported_as_clips(paths, uploads):
    a = write_generated(uploads / "a.wav", with_latents(metadata()))
    b = write_generated(uploads / "b.wav", with_latents(metadata()))
    assert import_voice(paths, "both", [a, b]).source == "clips"


def test_name_collisions_are_refused_with_a_suggestion(paths, uploads):
    make_voice(paths.voices_dir, "amy", (0.6,))
    clip = write_generated(uploads / "x.wav")
    with pytest.raises(VoiceExists, match="'amy_2'"):
        import_voice(paths, "amy", [clip])
    with pytest.raises(VoiceExists):
        import_voice(paths, "AMY", [clip])
    assert sorted(p.name for p in (paths.voices_dir / "amy").iterdir()) == ["clip1.wav"]


@pytest.mark.parametrize(
    "name", ["", "  ", "../escape", "a/b", ".temp", "random", "microphone", "x" * 101]
)
def test_unsafe_names_are_refused(paths, uploads, name):
    clip = write_generated(uploads / "x.wav")
    with pytest.raises(InvalidVoiceName):
        import_voice(paths, name, [clip])
    assert list(paths.voices_dir.iterdir()) == []
    assert not (paths.root / "escape").exists()


def test_nothing_usable_leaves_nothing_behind(paths, uploads):
    with pytest.raises(InvalidInput, match="Upload one or more"):
        import_voice(paths, "none", [])
    bad = uploads / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEgarbage")
    with pytest.raises(InvalidInput, match="bad.wav: cannot be read"):
        import_voice(paths, "none", [bad])
    assert list(paths.voices_dir.iterdir()) == []
