"""The History tab with a FakeTTS: built from results/ (filled at once, not only after a voice
change), its handlers called directly, and Copy Settings wired to the Generate tab."""

import gradio as gr
import pytest

from src.history import HEADERS
from src.ui import tab_generate, tab_history
from src.ui.app_ui import build_ui
from tests.app_doubles import FakeTTS, make_context, make_voice
from tests.generated_files import metadata, write_generated


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    context = make_context(tmp_path_factory.mktemp("history"), FakeTTS())
    make_voice(context.paths.voices_dir, "amy", (1.5, 2.0))
    results = context.paths.results_dir
    write_generated(results / "amy" / "20240101-100000" / "result.wav", metadata(seed=11))
    write_generated(
        results / "amy" / "20240102-100000" / "result.wav",
        metadata(seed=22, emotion="Custom", custom_emotion="whispering", preset=None),
    )
    write_generated(results / "amy" / "20240103-100000" / "result.wav")  # no metadata
    write_generated(results / "bob" / "20240101-100000" / "combined.wav", metadata(voice="bob"))
    return context


@pytest.fixture(scope="module")
def demo(ctx):
    return build_ui(ctx)


def test_tab_is_filled_when_built(demo):
    c = demo.app_components["history"]
    assert c["voice"].value == "amy" and [x[0] for x in c["voice"].choices] == ["amy", "bob"]
    assert list(c["table"].value["headers"]) == list(HEADERS)
    assert len(c["table"].value["data"]) == 3
    assert [x[0] for x in c["file"].choices][0] == "20240103-100000/result.wav"
    assert c["copy_settings"].visible is True


def test_picking_a_voice_fills_table_and_files(ctx):
    rows, files, audio = tab_history.show_voice(ctx, "bob")
    assert len(rows) == 1 and rows[0][0] == "20240101-100000/combined.wav"
    assert files["choices"] == ["20240101-100000/combined.wav"] and files["value"] is None
    assert audio is None
    assert tab_history.show_voice(ctx, None)[0] == []


def test_refresh_finds_new_outputs_and_keeps_the_voice(ctx):
    write_generated(ctx.paths.results_dir / "cara" / "20240101-100000" / "result.wav", metadata())
    voice, rows, files, _ = tab_history.refresh(ctx, "bob")
    assert voice["value"] == "bob" and voice["choices"] == ["amy", "bob", "cara"]
    assert len(rows) == 1
    assert tab_history.refresh(ctx, "gone")[0]["value"] == "amy"


def test_picking_a_file_plays_it_and_names_outside_are_refused(ctx):
    path = tab_history.play(ctx, "amy", "20240101-100000/result.wav")
    assert path == str(ctx.paths.results_dir / "amy" / "20240101-100000" / "result.wav")
    assert tab_history.play(ctx, "amy", None) is None
    with pytest.raises(gr.Error, match="does not exist"):
        tab_history.play(ctx, "amy", "../../config/exec.json")


def test_clicking_a_row_picks_its_file():
    event = gr.SelectData(
        None, {"index": [1, 3], "value": "x", "row_value": ["run/result.wav", "t"]}
    )
    assert tab_history.pick_row(event) == "run/result.wav"


def test_copy_settings_fills_every_generate_control_and_switches_tab(ctx):
    updates = tab_history.copy_settings(ctx, "amy", "20240102-100000/result.wav")
    fields = tab_generate.RESTORED_FIELDS
    assert len(updates) == len(fields) + 1
    values = dict(zip(fields, updates, strict=False))
    assert values["seed"] == 22 and values["num_autoregressive_samples"] == 4
    assert values["diffusion_sampler"] == "DDIM" and values["temperature"] == 0.5
    assert values["voice"]["value"] == "amy" and "amy" in values["voice"]["choices"]
    assert values["custom_emotion"] == {
        "__type__": "update",
        "value": "whispering",
        "visible": True,
    }
    assert updates[-1].selected == "generate"


def test_copy_settings_of_a_voice_that_is_gone_warns(ctx):
    with pytest.warns(UserWarning, match="not in voices/ any more"):
        updates = tab_history.copy_settings(ctx, "bob", "20240101-100000/combined.wav")
    assert updates[tab_generate.RESTORED_FIELDS.index("voice")]["value"] == "bob"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "Pick a file"),
        ("20240103-100000/result.wav", "nothing to copy"),
        ("nope.wav", "does not exist"),
    ],
)
def test_copy_settings_problems_are_plain_messages(ctx, name, message):
    with pytest.raises(gr.Error) as caught:
        tab_history.copy_settings(ctx, "amy", name)
    assert message in caught.value.message


def test_copy_settings_is_wired_to_the_generate_controls_and_tabs(demo):
    generate = demo.app_components["generate"]
    history = demo.app_components["history"]
    copy = next(
        fn for fn in demo.fns.values() if fn.inputs == [history["voice"], history["file"]] and fn.outputs
        and isinstance(fn.outputs[-1], gr.Tabs)
    )  # fmt: skip
    assert copy.outputs[:-1] == [generate[name] for name in tab_generate.RESTORED_FIELDS]


def test_built_alone_the_copy_button_is_hidden(ctx):
    with gr.Blocks():
        c = tab_history.build(ctx)
    assert c["copy_settings"].visible is False
