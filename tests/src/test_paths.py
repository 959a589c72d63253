"""AppPaths: every folder from one root, created on demand; voice names checked."""

import pytest

from src.errors import InvalidVoiceName
from src.paths import AppPaths, validate_voice_name


def test_from_root_resolves_every_folder_without_creating(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    assert paths.root == tmp_path.resolve()
    assert paths.tortoise_models_dir == tmp_path / "models" / "tortoise"
    assert paths.finetunes_dir == tmp_path / "models" / "finetunes"
    assert paths.voices_dir == tmp_path / "voices"
    assert paths.legacy_voices_dir == tmp_path / "tortoise" / "voices"
    assert paths.results_dir == tmp_path / "results"
    assert paths.training_dir == tmp_path / "training"
    assert paths.bin_dir == tmp_path / "bin"
    assert paths.settings_file == tmp_path / "config" / "exec.json"
    assert paths.generate_file == tmp_path / "config" / "generate.json"
    assert list(tmp_path.iterdir()) == []


def test_relative_root_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert AppPaths.from_root(".").root == tmp_path.resolve()


def test_ensure_creates_folders_but_not_the_legacy_one(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    paths.ensure()
    paths.ensure()  # idempotent
    for folder in (
        paths.tortoise_models_dir,
        paths.voices_dir,
        paths.results_dir,
        paths.training_dir,
        paths.config_dir,
        paths.bin_dir,
        paths.transformers_dir,
        paths.finetunes_dir,
    ):
        assert folder.is_dir()
    assert not paths.legacy_voices_dir.exists()


def test_results_and_training_dirs_created_on_request(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    assert not paths.results_dir_for("random").exists()
    assert paths.results_dir_for("random", create=True).is_dir()
    assert paths.training_dir_for("mary", create=True) == tmp_path / "training" / "mary"
    assert paths.voice_dir("mary") == tmp_path / "voices" / "mary"


@pytest.mark.parametrize(
    "name", ["", "   ", "../etc", "a/b", "a\\b", ".temp", "x" * 101, "a:b", "random", "a\x1b[31m", " lead"]
)
def test_bad_voice_names_rejected(name):
    with pytest.raises(InvalidVoiceName):
        validate_voice_name(name)


@pytest.mark.parametrize("name", ["con", "CON", "nul", "Aux", "prn", "com1", "COM9", "lpt1", "nul.txt"])
def test_windows_reserved_names_refused_on_every_platform(name):
    with pytest.raises(InvalidVoiceName, match="Windows reserves this name"):
        validate_voice_name(name)


@pytest.mark.parametrize("name", ["mary.", "mary ", "mary. ", "mary..."])
def test_trailing_dots_and_spaces_refused(name):
    with pytest.raises(InvalidVoiceName, match="ends with a space or a dot"):
        validate_voice_name(name)


@pytest.mark.parametrize("name", ["mary", "Mary Ann (2)", "console", "nully", "com10", "v1.2", "Émilie"])
def test_portable_names_accepted_unchanged(name):
    assert validate_voice_name(name) == name


def test_special_voices_allowed_where_asked(tmp_path):
    assert validate_voice_name("microphone", allow_special=True) == "microphone"
    with pytest.raises(InvalidVoiceName, match="reserved"):
        AppPaths.from_root(tmp_path).voice_dir("microphone")
    assert validate_voice_name("Mary Ann (2)") == "Mary Ann (2)"
