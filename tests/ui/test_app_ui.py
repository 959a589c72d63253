"""build_ui with a FakeTTS: the tabs and controls exist as declared, and the handlers (called
directly) give the right updates and plain messages for every bad input."""

import dataclasses
import logging

import gradio as gr
import pytest

from src.generate import GenerateRequest
from src.settings import GenerateDefaults, save_generate_defaults
from src.ui import tab_generate
from src.ui.app_ui import TABS, build_ui
from src.ui.errors import ui_handler
from tests.app_doubles import FakeTTS, make_context, make_voice, write_corrupt_clip


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One app for the module (building the UI takes a second): voices amy, bob, empty, broken."""
    fake = FakeTTS()
    context = make_context(tmp_path_factory.mktemp("ui"), fake)
    voices = context.paths.voices_dir
    make_voice(voices, "amy", (1.5, 2.0))
    make_voice(voices, "bob", (1.5,))
    (voices / "empty").mkdir()
    (voices / "broken").mkdir()
    write_corrupt_clip(voices / "broken" / "bad.wav")
    return fake, context, build_ui(context)


@pytest.fixture
def fake(shared):
    shared[0].on_step = None
    return shared[0]


@pytest.fixture
def ctx(shared, fake):
    return shared[1]


@pytest.fixture
def demo(shared):
    return shared[2]


@pytest.fixture
def fresh_ctx(tmp_path):
    context = make_context(tmp_path, FakeTTS())
    make_voice(context.paths.voices_dir, "amy", (1.5, 2.0))
    make_voice(context.paths.voices_dir, "bob", (1.5,))
    return context


def handler(demo, name):
    for fn in demo.fns.values():
        if fn.name == name:
            return fn.fn
    raise KeyError(name)


def run(demo, progress=None, **changes):
    values = {
        **dataclasses.asdict(GenerateRequest()),
        "voice": "amy",
        "text": "Hello.",
        "num_autoregressive_samples": 4,
        "diffusion_iterations": 4,
        **changes,
    }
    args = [values[name] for name in tab_generate.REQUEST_FIELDS]
    return handler(demo, "run")(*args, progress or (lambda *a, **k: None))


def test_five_tabs_in_order_and_nothing_loaded(demo, ctx):
    labels = [block.label for block in demo.blocks.values()
              if isinstance(block, gr.Tab) and block.parent.parent is demo]  # top-level tabs only
    assert labels == list(TABS)
    assert not ctx.engine.is_loaded  # building the UI loads no model


def test_every_generate_control_in_order_with_declared_ranges(demo):
    c = demo.app_components["generate"]
    for name in tab_generate.REQUEST_FIELDS:
        assert name in c, name
    for name in (
        "refresh_voices",
        "compute_latents",
        "run",
        "stop",
        "reset",
        "output",
        "candidate",
        "source_sample",
        "results",
        "notes",
    ):
        assert name in c, name
    assert c["text"].label == "Prompt" and "[brackets]" in c["text"].info
    assert c["delimiter"].placeholder == "\\n"
    assert c["emotion"].choices[0][0] == "None" and ("Custom", "Custom") in c["emotion"].choices
    assert (c["candidates"].minimum, c["candidates"].maximum) == (1, 6)
    assert (c["num_autoregressive_samples"].minimum, c["num_autoregressive_samples"].maximum) == (
        2,
        512,
    )
    assert c["diffusion_iterations"].maximum == 512
    assert [x[0] for x in c["preset"].choices] == ["Ultra Fast", "Fast", "Standard", "High Quality"]
    assert [x[0] for x in c["diffusion_sampler"].choices] == ["P", "DDIM", "DPM++2M"]
    assert c["mic_audio"].sources == ["microphone"]
    assert c["voice"].value == "amy" and c["voice_chunks"].value == 2  # first voice, its clip count
    assert [x[0] for x in c["voice"].choices] == [
        "amy",
        "bob",
        "broken",
        "empty",
        "random",
        "microphone",
    ]
    assert c["results"].headers == tab_generate.RESULT_HEADERS


def test_generate_api_endpoint_has_named_parameters(demo):
    info = demo.get_api_info()["named_endpoints"]["/generate"]
    names = [p["parameter_name"] for p in info["parameters"]]
    assert names == list(tab_generate.REQUEST_FIELDS)


def test_run_returns_output_results_and_sample(demo, ctx):
    output, candidate, sample, rows, notes = run(demo, seed=77)
    assert output.endswith("result.wav")
    assert candidate["visible"] is False
    assert sample["visible"] is True and sample["value"][0] == 22050
    assert rows[0][0] == 77 and "results/amy/" in rows[0][2]
    assert "Seed used: **77**" in notes
    saved = ctx.generate_defaults()
    assert saved.voice == "amy" and saved.num_autoregressive_samples == 4


def test_run_with_candidates_shows_the_picker(demo):
    output, candidate, *_ = run(demo, text="One.\nTwo.", delimiter="\\n", candidates=2)
    assert candidate["visible"] is True and len(candidate["choices"]) == 2
    assert output.endswith("combined_0.wav")
    assert handler(demo, "pick_candidate")(candidate["choices"][1][1]).endswith("combined_1.wav")


def test_progress_is_reported_per_stage(demo):
    seen = []
    run(demo, progress=lambda fraction, desc=None: seen.append(desc))
    assert any("diffusion" in (d or "") for d in seen) and "Done" in seen


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(text=""), "Please provide text"),
        (dict(text=" | | ", delimiter="|"), "every line is empty"),
        (dict(voice=""), "Please provide a voice"),
        (dict(voice="empty"), "has no audio"),
        (dict(voice="broken"), "bad.wav: cannot be read"),
        (dict(voice="microphone", mic_audio=None), "no recording"),
        (dict(voice="../x"), "cannot be used as a voice name"),
        (dict(voice="nobody"), "was not found"),
        (dict(candidates=6), "Candidates"),
    ],
)
def test_bad_input_is_a_plain_message(demo, changes, message):
    with pytest.raises(gr.Error) as caught:
        run(demo, **changes)
    assert message in caught.value.message and "Traceback" not in caught.value.message


def test_stop_mid_run_says_so_and_saves_nothing(demo, ctx, fake):
    before = sorted(ctx.paths.results_dir.rglob("*.wav"))
    fake.calls.clear()
    fake.on_step = lambda call, step: ctx.engine.cancel() if step == 2 else None
    with pytest.warns(UserWarning, match="Generation stopped"):
        output, candidate, sample, rows, notes = run(demo)
    assert output is None and rows == []
    assert not list(ctx.paths.results_dir.rglob(".*.tmp*"))  # no half-written files
    assert len(fake.calls) == 1
    assert sorted(ctx.paths.results_dir.rglob("*.wav")) == before


def test_stop_when_idle_is_harmless(demo, capsys):
    handler(demo, "stop")()  # gr.Info prints when called outside a request
    assert "Nothing is running" in capsys.readouterr().out


def test_compute_latents_button(demo, ctx, capsys):
    handler(demo, "compute_latents")("amy", 2, lambda *a, **k: None)
    assert "Latents for 'amy' computed" in capsys.readouterr().out
    assert (ctx.paths.voices_dir / "amy" / "cond_latents_fakehash.pth").is_file()
    with pytest.raises(gr.Error, match="no voice folder"):
        handler(demo, "compute_latents")("random", 1, lambda *a, **k: None)


def test_refresh_voices_and_suggested_chunks(demo, ctx):
    make_voice(ctx.paths.voices_dir, "cara", (1.0, 1.0, 1.0))
    update = handler(demo, "refresh_voices")("bob")
    assert "cara" in update["choices"] and update["value"] == "bob"
    assert handler(demo, "refresh_voices")("gone")["value"] == "amy"
    assert handler(demo, "suggest_voice_chunks")("cara") == 3
    assert handler(demo, "suggest_voice_chunks")("random") == 1


def test_presets_fill_samples_and_iterations(demo):
    assert handler(demo, "apply_preset")("Ultra Fast") == (16, 30)
    assert handler(demo, "apply_preset")("High Quality") == (256, 400)
    assert handler(demo, "apply_preset")(None)[0] == gr.update()


def test_microphone_recording_selects_the_microphone_voice(demo):
    assert handler(demo, "mic_selects_voice")("/tmp/rec.wav", "amy") == "microphone"
    assert handler(demo, "mic_selects_voice")(None, "amy") == "amy"


def test_custom_emotion_box_follows_the_emotion(demo):
    assert handler(demo, "show_custom_emotion")("Custom")["visible"] is True
    assert handler(demo, "show_custom_emotion")("Sad")["visible"] is False


def test_reset_to_defaults(demo):
    values = dict(zip(tab_generate.RESETTABLE, handler(demo, "reset_values")(), strict=True))
    assert values["temperature"] == GenerateDefaults().temperature and values["cond_free"] is True
    assert "text" not in values and "voice" not in values


def test_last_values_are_restored_on_load(fresh_ctx):
    ctx = fresh_ctx
    save_generate_defaults(
        ctx.paths.generate_file,
        GenerateDefaults(
            text="Saved text.",
            voice="bob",
            temperature=0.7,
            voice_chunks=5,
            emotion="Custom",
            custom_emotion="whispering",
        ),
    )
    demo = build_ui(ctx)
    c = demo.app_components["generate"]
    assert (
        c["text"].value == "Saved text."
        and c["voice"].value == "bob"
        and c["temperature"].value == 0.7
    )
    values = dict(zip(tab_generate.RESTORED_FIELDS, tab_generate.restored_values(ctx), strict=True))
    assert (
        values["text"] == "Saved text."
        and values["voice"]["value"] == "bob"
        and values["voice_chunks"] == 5
    )
    assert values["custom_emotion"]["visible"] is True


def test_restore_falls_back_when_the_saved_voice_is_gone(fresh_ctx):
    ctx = fresh_ctx
    save_generate_defaults(
        ctx.paths.generate_file, GenerateDefaults(voice="deleted", voice_chunks=9)
    )
    values = dict(zip(tab_generate.RESTORED_FIELDS, tab_generate.restored_values(ctx), strict=True))
    assert values["voice"]["value"] == "amy" and values["voice_chunks"] == 2


def test_ui_handler_hides_internal_errors_and_logs_them(caplog):
    @ui_handler
    def broken():
        raise KeyError("secret detail")

    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error) as caught:
        broken()
    assert "Internal error" in caught.value.message and "secret" not in caught.value.message
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


def test_import_rules():
    import subprocess
    import sys

    code = (
        "import sys, tortoise, tortoise.api\n"
        "assert 'gradio' not in sys.modules and 'src' not in sys.modules, 'tortoise imports app'\n"
        "import src.generate, src.voices, src.engine, src.context, app\n"
        "assert 'gradio' not in sys.modules, 'services (or importing app.py) pulled in gradio'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_upload_cache_paths_are_shown_as_the_users_file_name():
    from src.errors import InvalidInput
    from src.ui.errors import hide_upload_paths, user_message

    cache = "/tmp/gradio"
    message = f"{cache}/5f3a9c/My Interview.m4a: cannot be read as audio"
    assert hide_upload_paths(message, cache) == "My Interview.m4a: cannot be read as audio"
    assert hide_upload_paths("voices/amy/clip.wav is fine", cache) == "voices/amy/clip.wav is fine"
    import gradio as gr

    upload_dir = str(gr.utils.get_upload_folder())
    shown = user_message(InvalidInput(f"Could not read {upload_dir}/abc123/take 2.wav (bad header)."))
    assert shown == "Could not read take 2.wav (bad header)."


def test_redaction_switch_and_one_progress_bar(demo):
    c = demo.app_components["generate"]
    assert c["enable_redaction"].label == "Cut [Bracketed] Words" and c["enable_redaction"].value is True
    assert "enable_redaction" in tab_generate.EXPERIMENTAL_FIELDS
    run = next(d for d in demo.config["dependencies"] if d.get("api_name") == "generate")
    assert run["show_progress_on"] == [c["output"]._id]  # not also over Results and Notes
