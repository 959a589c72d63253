"""The Utilities tab with a FakeTTS: upload -> settings JSON / note / latents download / name,
Import Voice messages, Copy Settings, and the wiring to the Generate tab."""

import gradio as gr
import pytest

from src.ui import tab_generate, tab_utilities
from src.ui.app_ui import build_ui
from src.utilities import latents_export_dir
from tests.app_doubles import FakeTTS, make_context, make_voice
from tests.generated_files import (
    malicious_latents_b64,
    metadata,
    with_latents,
    write_generated,
)


@pytest.fixture
def ctx(tmp_path):
    context = make_context(tmp_path / "app", FakeTTS())
    make_voice(context.paths.voices_dir, "amy", (1.5,))
    return context


@pytest.fixture
def uploads(tmp_path):
    return tmp_path / "uploads"


def test_upload_with_settings_and_latents(ctx, uploads):
    clip = write_generated(uploads / "result.wav", with_latents(metadata(voice="amy")))
    notes, shown, copy, latents, name = tab_utilities.show_upload(ctx, [str(clip)], "")
    assert shown["visible"] is True and shown["value"]["seed"] == 1234
    assert "latents" not in shown["value"] and shown["value"]["time"] == "1.235"
    assert copy["visible"] is True
    assert latents["visible"] is True and latents["value"].endswith("cond_latents.pth")
    assert latents["value"].startswith(str(latents_export_dir()))
    assert name == "amy_2"  # amy exists: a free name is offered
    assert "download them below" in notes
    assert [p.name for p in ctx.paths.voices_dir.iterdir()] == ["amy"]  # nothing like voices/.temp


def test_upload_keeps_a_typed_name(ctx, uploads):
    clip = write_generated(uploads / "result.wav", metadata())
    assert tab_utilities.show_upload(ctx, [str(clip)], "mine")[4] == {"__type__": "update"}


def test_upload_without_settings(ctx, uploads):
    clip = write_generated(uploads / "plain take.wav")
    notes, shown, copy, latents, name = tab_utilities.show_upload(ctx, [str(clip)], "")
    assert notes == tab_utilities.NO_METADATA
    assert shown["visible"] is False and copy["visible"] is False and latents["visible"] is False
    assert name == "plain take"


def test_upload_of_malicious_latents_is_refused_with_a_message(ctx, uploads, tmp_path):
    marker = tmp_path / "pwned.txt"
    clip = write_generated(uploads / "evil.wav", metadata(latents=malicious_latents_b64(marker)))
    with pytest.warns(UserWarning, match="could run code"):
        notes, shown, copy, latents, _ = tab_utilities.show_upload(ctx, [str(clip)], "")
    assert "Embedded latents refused" in notes and shown["visible"] is True
    assert latents["visible"] is False
    with pytest.raises(gr.Error, match="could run code"):
        tab_utilities.import_clicked(ctx, [str(clip)], "evil", True)
    assert not marker.exists() and not (ctx.paths.voices_dir / "evil").exists()


def test_several_files_and_no_files(ctx, uploads):
    a, b = write_generated(uploads / "a.wav"), write_generated(uploads / "b.wav")
    notes, shown, *_, name = tab_utilities.show_upload(ctx, [str(a), str(b)], "")
    assert "2 files uploaded" in notes and shown["visible"] is False and name == "a"
    assert tab_utilities.show_upload(ctx, None, "")[0] == ""


def test_import_voice_messages(ctx, uploads):
    a, b = write_generated(uploads / "a.wav"), write_generated(uploads / "b.wav")
    message = tab_utilities.import_clicked(ctx, [str(a), str(b)], "newbie", True)
    assert "Imported voice **newbie** with 2 clip(s)" in message
    assert "newbie" in ctx.voices.list_voices()
    with pytest.raises(gr.Error, match="already exists.*newbie_2"):
        tab_utilities.import_clicked(ctx, [str(a)], "newbie", True)
    with pytest.raises(gr.Error, match="cannot be used as a voice name"):
        tab_utilities.import_clicked(ctx, [str(a)], "../up", True)
    with pytest.raises(gr.Error, match="it is empty"):
        tab_utilities.import_clicked(ctx, [str(a)], "", True)
    with pytest.raises(gr.Error, match="Upload one or more"):
        tab_utilities.import_clicked(ctx, None, "other", True)


def test_import_from_latents_message(ctx, uploads):
    clip = write_generated(uploads / "result.wav", with_latents(metadata()))
    message = tab_utilities.import_clicked(ctx, [str(clip)], "latent voice", True)
    assert "from the latents embedded" in message
    assert (ctx.paths.voices_dir / "latent voice" / "cond_latents.pth").is_file()


def test_copy_settings(ctx, uploads):
    clip = write_generated(uploads / "result.wav", metadata(seed=4321))
    updates = tab_utilities.copy_settings(ctx, [str(clip)])
    assert updates[tab_generate.RESTORED_FIELDS.index("seed")] == 4321
    assert updates[-1].selected == "generate"
    plain = write_generated(uploads / "plain.wav")
    with pytest.raises(gr.Error, match="nothing to copy"):
        tab_utilities.copy_settings(ctx, [str(plain)])
    with pytest.raises(gr.Error, match="single generated file"):
        tab_utilities.copy_settings(ctx, [str(clip), str(plain)])


def test_wiring_to_the_generate_tab(ctx):
    demo = build_ui(ctx)
    generate = demo.app_components["generate"]
    utilities = demo.app_components["utilities"]
    fns = list(demo.fns.values())
    copy = next(
        fn
        for fn in fns
        if fn.inputs == [utilities["files"]]
        and fn.outputs[-1:]
        and isinstance(fn.outputs[-1], gr.Tabs)
    )
    assert copy.outputs[:-1] == [generate[name] for name in tab_generate.RESTORED_FIELDS]
    refresh = next(
        fn
        for fn in fns
        if fn.inputs == [generate["voice"]]
        and fn.outputs == [generate["voice"]]
        and fn.trigger_after is not None
    )
    make_voice(ctx.paths.voices_dir, "zed", (1.0,))
    update = refresh.fn("amy")
    assert update["value"] == "amy" and "zed" in [c for c in update["choices"]]
