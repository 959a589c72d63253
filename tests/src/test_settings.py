"""AppSettings and GenerateDefaults: declarations, exec.json/generate.json files, CLI flags."""

import argparse
import dataclasses
import json

import pytest

from src.errors import SettingsError
from src.settings import (
    RESTART,
    AppSettings,
    GenerateDefaults,
    add_setting_arguments,
    apply_cli_overrides,
    build_arg_parser,
    field_specs,
    load_generate_defaults,
    load_settings,
    save_generate_defaults,
    save_settings,
    update_setting,
)

# Flags as mrq's UI named them (WEBUI_SPEC §6); booleans also get --no-<flag>.
SPEC_FLAGS = {
    "listen": "--listen", "share": "--share", "check_for_updates": "--check-for-updates",
    "models_local_only": "--models-from-local-only", "low_vram": "--low-vram",
    "embed_output_metadata": "--embed-output-metadata", "slim_latents": "--latents-lean-and-mean",
    "voice_fixer": "--voice-fixer", "voice_fixer_use_cuda": "--voice-fixer-use-cuda",
    "force_cpu_for_conditioning_latents": "--force-cpu-for-conditioning-latents",
    "do_not_load_tts_on_startup": "--defer-tts-load", "delete_non_final_output": "--prune-nonfinal-outputs",
    "device_override": "--device-override", "sample_batch_size": "--sample-batch-size",
    "concurrency_count": "--concurrency-count", "output_sample_rate": "--output-sample-rate",
    "output_volume": "--output-volume", "autoregressive_model": "--autoregressive-model",
    "whisper_model": "--whisper-model", "training_default_halfp": "--training-default-halfp",
    "training_default_bnb": "--training-default-bnb",
}  # fmt: skip


def test_every_setting_is_declared_once_with_ui_metadata():
    specs = field_specs(AppSettings)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for spec in specs:
        assert spec.label and spec.help and spec.widget and spec.cli, spec.name
    assert len({s.cli for s in specs}) == len(specs)
    for name, flag in SPEC_FLAGS.items():
        assert next(s for s in specs if s.name == name).cli == flag
    by_name = {s.name: s for s in specs}
    assert by_name["listen"].requires_restart and by_name["listen"].takes_effect == RESTART
    assert not by_name["output_volume"].requires_restart
    assert by_name["output_volume"].maximum == 2.0 and by_name["whisper_backend"].choices == (
        "openai-whisper",
        "faster-whisper",
    )
    assert by_name["slim_latents"].label == "Slimmer Computed Latents"
    assert by_name["sample_batch_size"].default == 0
    assert by_name["listen"].placeholder == "127.0.0.1:7860/"


def test_generate_defaults_match_the_tab():
    d = GenerateDefaults()
    assert (d.candidates, d.seed, d.num_autoregressive_samples, d.diffusion_iterations) == (1, 0, 128, 128)
    assert (d.temperature, d.breathing_room, d.diffusion_sampler, d.cond_free) == (0.2, 8, "P", True)
    assert (d.top_p, d.diffusion_temperature, d.length_penalty, d.repetition_penalty, d.cond_free_k) == (
        0.8,
        1.0,
        1.0,
        2.0,
        2.0,
    )
    specs = {s.name: s for s in field_specs(GenerateDefaults)}
    assert specs["num_autoregressive_samples"].label == "Samples" and specs["breathing_room"].maximum == 32
    assert specs["text"].hints == {"lines": 4}


def test_settings_round_trip(tmp_path):
    path = tmp_path / "config" / "exec.json"
    settings = dataclasses.replace(
        AppSettings(),
        listen="0.0.0.0:8000/",
        low_vram=True,
        output_volume=1.5,
        whisper_backend="faster-whisper",
        sample_batch_size=8,
    )
    save_settings(path, settings)
    text = path.read_text()
    assert json.loads(text)["schema_version"] == 1 and "\t" in text
    loaded = load_settings(path)
    assert loaded.value == settings and loaded.warnings == ()
    assert loaded.value.listen == "0.0.0.0:8000/"  # mrq never persisted it


def test_missing_file_gives_defaults_silently(tmp_path):
    loaded = load_settings(tmp_path / "exec.json")
    assert loaded.value == AppSettings() and loaded.warnings == () and loaded.backup_path is None


@pytest.mark.parametrize("content", ['{"schema_version": 1, "low_vram": tr', "", "null"])
def test_corrupt_or_partial_file_kept_as_bak(tmp_path, content):
    path = tmp_path / "exec.json"
    path.write_text(content)
    loaded = load_settings(path)
    assert loaded.value == AppSettings()
    assert (tmp_path / "exec.json.bak").read_text() == content
    assert not path.exists() and "could not be read" in loaded.warnings[0]


def test_wrong_types_fall_back_to_default_and_say_so(tmp_path):
    path = tmp_path / "exec.json"
    path.write_text(json.dumps({
        "schema_version": 1, "low_vram": "yes", "sample_batch_size": 4.0, "output_volume": 1,
        "whisper_model": 5, "output_sample_rate": -5, "share": True, "frobnicate": 1, "extra2": 2,
    }))  # fmt: skip
    loaded = load_settings(path)
    s = loaded.value
    assert (s.low_vram, s.sample_batch_size, s.output_volume, s.share) == (False, 4, 1.0, True)
    assert (s.whisper_model, s.output_sample_rate) == ("base", 44100)
    text = "\n".join(loaded.warnings)
    assert "'low_vram'" in text and "'whisper_model'" in text and "'output_sample_rate'" in text
    assert "frobnicate" in text and "extra2" in text and "unknown" in text
    assert path.exists()  # a readable file is not moved away


def test_migrates_mrq_exec_json(tmp_path):
    path = tmp_path / "exec.json"
    path.write_text(json.dumps({
        "share": False, "listen": None, "check-for-updates": True, "models-from-local-only": True,
        "low-vram": True, "embed-output-metadata": False, "latents-lean-and-mean": False,
        "voice-fixer": True, "voice-fixer-use-cuda": False, "force-cpu-for-conditioning-latents": True,
        "defer-tts-load": True, "device-override": "cuda:1", "prune-nonfinal-outputs": False,
        "sample-batch-size": None, "concurrency-count": 3, "output-sample-rate": 24000,
        "output-volume": 0.5, "autoregressive-model": "auto", "whisper-model": "small.en",
        "whisper-cpp": True, "training-default-halfp": True, "training-default-bnb": False,
        "cond-latent-max-chunk-size": 1000000,
    }, indent="\t"))  # fmt: skip
    loaded = load_settings(path)
    s = loaded.value
    assert loaded.file_version == 0
    assert s.check_for_updates and s.models_local_only and s.low_vram and s.voice_fixer
    assert not s.embed_output_metadata and not s.slim_latents and not s.voice_fixer_use_cuda
    assert s.force_cpu_for_conditioning_latents and s.do_not_load_tts_on_startup
    assert not s.delete_non_final_output and s.device_override == "cuda:1"
    assert (s.sample_batch_size, s.concurrency_count, s.output_sample_rate) == (0, 3, 24000)
    assert (s.output_volume, s.autoregressive_model, s.whisper_model) == (0.5, None, "small.en")
    assert s.training_default_halfp and not s.training_default_bnb
    assert s.latents_max_chunk_size == pytest.approx(1000000 / 22050)
    assert len(loaded.warnings) == 1 and "whisper.cpp" in loaded.warnings[0]
    save_settings(path, s)
    assert load_settings(path).value == s and load_settings(path).file_version == 1


def test_newer_file_loads_known_keys_with_a_warning(tmp_path):
    path = tmp_path / "exec.json"
    path.write_text(json.dumps({"schema_version": 99, "low_vram": True, "future": 1}))
    loaded = load_settings(path)
    assert loaded.value.low_vram and "newer version" in loaded.warnings[0]


def test_boolean_flags_use_boolean_optional_action():
    parser = build_arg_parser()
    for action in parser._actions:
        if action.dest in SPEC_FLAGS and isinstance(getattr(AppSettings(), action.dest), bool):
            assert isinstance(action, argparse.BooleanOptionalAction), action.dest
        assert action.type is not bool


def test_cli_overrides_take_precedence_over_file_and_are_not_saved(tmp_path):
    path = tmp_path / "exec.json"
    save_settings(path, dataclasses.replace(AppSettings(), low_vram=False, output_volume=0.5, share=True))
    before = path.read_text()
    namespace = build_arg_parser().parse_args([
        "--low-vram", "--no-embed-output-metadata", "--no-latents-lean-and-mean",
        "--no-prune-nonfinal-outputs", "--no-voice-fixer-use-cuda", "--no-training-default-bnb",
        "--sample-batch-size", "4",
        "--device-override", "cpu", "--listen", "0.0.0.0:7861",
    ])  # fmt: skip
    s = apply_cli_overrides(load_settings(path).value, namespace)
    assert s.low_vram and s.sample_batch_size == 4 and s.device_override == "cpu"
    assert not (s.embed_output_metadata or s.slim_latents or s.delete_non_final_output)
    assert not (s.voice_fixer_use_cuda or s.training_default_bnb)
    assert s.output_volume == 0.5 and s.share  # from the file: not given on the command line
    assert s.listen == "0.0.0.0:7861"
    assert path.read_text() == before


def test_no_flags_change_nothing_and_bad_values_fail():
    parser = build_arg_parser()
    settings = AppSettings(output_volume=0.7)
    assert apply_cli_overrides(settings, parser.parse_args([])) == settings
    assert vars(parser.parse_args([])) == {}
    with pytest.raises(SettingsError, match="--output-sample-rate"):
        apply_cli_overrides(settings, parser.parse_args(["--output-sample-rate", "5"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--whisper-backend", "gigantic"])
    mine = add_setting_arguments(argparse.ArgumentParser())
    assert mine.parse_args(["--share"]).share is True
    assert apply_cli_overrides(settings, argparse.Namespace(low_vram=None)) == settings


def test_update_setting_checks_values():
    s = AppSettings()
    assert update_setting(s, "output_volume", 1.25).output_volume == 1.25
    assert update_setting(s, "sample_batch_size", 16.0).sample_batch_size == 16
    assert update_setting(s, "device_override", "  ").device_override is None
    with pytest.raises(SettingsError, match="Output Volume"):
        update_setting(s, "output_volume", 3)
    with pytest.raises(SettingsError, match="no setting"):
        update_setting(s, "nope", 1)
    with pytest.raises(SettingsError):
        update_setting(s, "low_vram", "true")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.low_vram = True  # type: ignore[misc]


def test_generate_defaults_round_trip(tmp_path):
    path = tmp_path / "generate.json"
    values = GenerateDefaults(
        text="Hello.\nWorld.",
        delimiter="\\n",
        emotion="Sad",
        seed=42,
        candidates=2,
        preset="Fast",
        diffusion_sampler="DDIM",
        half_precision=True,
    )
    save_generate_defaults(path, values)
    loaded = load_generate_defaults(path)
    assert loaded.value == values and loaded.warnings == ()


def test_migrates_mrq_generate_json(tmp_path):
    path = tmp_path / "generate.json"
    path.write_text(json.dumps({
        "text": "[I am really sad,] Hello there.", "delimiter": "\\n", "emotion": "Sad", "prompt": "",
        "voice": "mary", "seed": None, "candidates": 2, "num_autoregressive_samples": 96,
        "diffusion_iterations": 80, "temperature": 0.8, "diffusion_sampler": "DDIM", "breathing_room": 8,
        "cvvp_weight": 0.0, "top_p": 0.8, "diffusion_temperature": 1.0, "length_penalty": 1.0,
        "repetition_penalty": 2.0, "cond_free_k": 2.0, "experimentals": ["Half Precision"],
        "time": 12.5, "datetime": "2023-02-28T22:13:21", "model": "./models/tortoise/autoregressive.pth",
        "model_hash": None,
    }, indent="\t"))  # fmt: skip
    loaded = load_generate_defaults(path)
    v = loaded.value
    assert loaded.warnings == ()
    assert v.text == "Hello there." and v.seed == 0 and v.voice == "mary" and v.candidates == 2
    assert v.half_precision and not v.cond_free and v.diffusion_sampler == "DDIM"
    assert (v.num_autoregressive_samples, v.diffusion_iterations, v.temperature) == (96, 80, 0.8)


def test_reset_file_gives_the_tab_defaults(tmp_path):
    path = tmp_path / "generate.json"
    path.write_text("{}")
    assert load_generate_defaults(path).value == GenerateDefaults()  # not mrq's 0.8 / DDIM fallbacks


def test_short_flag_aliases_set_the_same_settings():
    from src.settings import AppSettings, apply_cli_overrides, build_arg_parser

    ns = build_arg_parser().parse_args(["--device", "cpu", "--models-local-only", "--no-embed-metadata"])
    s = apply_cli_overrides(AppSettings(), ns)
    assert s.device_override == "cpu" and s.models_local_only is True and s.embed_output_metadata is False
