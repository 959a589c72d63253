"""Autoregressive model discovery for Settings: base model, models/finetunes/, training runs."""

import pytest

from src.errors import SettingsError
from src.models_catalog import BASE_MODEL_VALUE, check_model_choice, list_autoregressive_models
from src.paths import AppPaths


@pytest.fixture
def paths(tmp_path):
    paths = AppPaths.from_root(tmp_path)
    paths.ensure()
    return paths


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_only_the_base_model_on_a_fresh_install(paths):
    choices = list_autoregressive_models(paths)
    assert [c.value for c in choices] == [BASE_MODEL_VALUE]
    assert choices[0].label == "Base model (models/tortoise/autoregressive.pth)"


def test_finetunes_and_training_checkpoints_in_order(paths):
    touch(paths.finetunes_dir / "zed.pth")
    touch(paths.finetunes_dir / "alpha.pth")
    touch(paths.finetunes_dir / "notes.txt")
    for step in (1000, 500, 50):
        touch(paths.training_dir / "mary" / "finetune" / "models" / f"{step}_gpt.pth")
    touch(paths.training_dir / "mary" / "finetune" / "models" / "500.state")
    touch(paths.training_dir / "amy" / "finetune" / "models" / "200_gpt.pth")
    touch(paths.training_dir / "old" / "models" / "100_gpt.pth")  # mrq's baseline layout
    touch(paths.training_dir / "amy" / "finetune" / "training_state" / "200_gpt.pth")
    labels = [c.label for c in list_autoregressive_models(paths)[1:]]
    assert labels == [
        "models/finetunes/alpha.pth",
        "models/finetunes/zed.pth",
        "training/amy/finetune/models/200_gpt.pth",
        "training/mary/finetune/models/50_gpt.pth",
        "training/mary/finetune/models/500_gpt.pth",
        "training/mary/finetune/models/1000_gpt.pth",
        "training/old/models/100_gpt.pth",
    ]
    values = [c.value for c in list_autoregressive_models(paths)[1:]]
    assert values[0] == str((paths.finetunes_dir / "alpha.pth").resolve())


def test_the_current_setting_is_always_offered(paths, tmp_path):
    elsewhere = touch(tmp_path.parent / f"{tmp_path.name}-outside" / "mine.pth")
    choices = list_autoregressive_models(paths, str(elsewhere))
    assert choices[-1].value == str(elsewhere) and choices[-1].label == str(elsewhere)
    gone = list_autoregressive_models(paths, str(paths.finetunes_dir / "gone.pth"))
    assert gone[-1].label == "models/finetunes/gone.pth (missing)"
    listed = touch(paths.finetunes_dir / "a.pth").resolve()
    assert len(list_autoregressive_models(paths, str(listed))) == 2  # not listed twice


def test_checking_a_choice(paths):
    model = touch(paths.training_dir / "mary" / "finetune" / "models" / "500_gpt.pth")
    assert check_model_choice(paths, "") is None and check_model_choice(paths, None) is None
    assert check_model_choice(paths, str(model)) == str(model.resolve())
    assert check_model_choice(paths, "training/mary/finetune/models/500_gpt.pth") == str(
        model.resolve()
    )
    with pytest.raises(SettingsError, match="was not found"):
        check_model_choice(paths, str(paths.finetunes_dir / "gone.pth"))
    with pytest.raises(SettingsError):
        check_model_choice(paths, str(touch(paths.finetunes_dir / "x.txt")))
