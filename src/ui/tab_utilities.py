"""The Utilities tab: upload audio to see the settings it was generated with (Copy Settings, the
embedded latents as a `.pth` download), and Import Voice from clips or from a generated file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from src.context import AppContext
from src.history import settings_to_copy
from src.metadata import read_metadata
from src.ui.common import voice_list_update
from src.ui.copy_settings import copy_targets, copy_updates
from src.ui.errors import ui_handler
from src.utilities import import_voice, inspect_upload, suggest_voice_name

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
NO_METADATA = (
    "This file holds no generation settings (no embedded metadata and no .json beside it)."
)
MANY_FILES = (
    "{count} files uploaded: Import Voice turns them into one voice's clips. Upload a single file "
    "to see its generation settings."
)
AUDIO_TYPES = ["audio", ".json"]


def build(
    ctx: AppContext, *, generate: dict[str, Any] | None = None, tabs: gr.Tabs | None = None
) -> dict[str, Any]:
    """Lay out the Utilities tab inside the current gr.Tab and wire its events.

    Args:
        ctx: the app context.
        generate: the Generate tab's components: Copy Settings fills them (with `tabs`) and an
            import refreshes its voice list. Without them the tab works on its own.
        tabs: the app's gr.Tabs.

    Returns:
        Components: `files`, `voice_name`, `use_latents`, `import_voice`, `import_status`,
        `notes`, `metadata`, `copy_settings`, `latents`.
    """
    c: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column():
            c["files"] = gr.File(
                label="Audio Input", file_count="multiple", file_types=AUDIO_TYPES,
                type="filepath", elem_id="util-files",
            )  # fmt: skip
            c["voice_name"] = gr.Textbox(
                label="Voice Name", elem_id="util-voice-name",
                info="The new folder under voices/; letters, digits, spaces, - and _ are safe.",
            )  # fmt: skip
            c["use_latents"] = gr.Checkbox(
                True, label="Use embedded latents", elem_id="util-use-latents",
                info="A single generated file that embeds its voice's latents becomes a voice of "
                "just those latents; untick to import its audio as a clip instead.",
            )  # fmt: skip
            c["import_voice"] = gr.Button("Import Voice", variant="primary", elem_id="util-import")
            c["import_status"] = gr.Markdown(elem_id="util-import-status")
        with gr.Column():
            c["notes"] = gr.Markdown(elem_id="util-notes")
            c["metadata"] = gr.JSON(label="Audio Metadata", visible=False, elem_id="util-metadata")
            c["copy_settings"] = gr.Button("Copy Settings", visible=False, elem_id="util-copy")
            c["latents"] = gr.File(
                label="Voice Latents", visible=False, interactive=False, elem_id="util-latents"
            )
    has_generate = generate is not None and tabs is not None
    c["files"].change(
        lambda files, name: show_upload(ctx, files, name, copy_enabled=has_generate),
        inputs=[c["files"], c["voice_name"]],
        outputs=[c["notes"], c["metadata"], c["copy_settings"], c["latents"], c["voice_name"]],
        **PRIVATE,
    )
    imported = c["import_voice"].click(
        lambda files, name, use_latents: import_clicked(ctx, files, name, use_latents),
        inputs=[c["files"], c["voice_name"], c["use_latents"]],
        outputs=c["import_status"],
        **PRIVATE,
    )
    if has_generate:
        imported.success(
            lambda current: voice_list_update(ctx.voices.list_voices(), current),
            inputs=generate["voice"],
            outputs=generate["voice"],
            **PRIVATE,
        )
        c["copy_settings"].click(
            lambda files: copy_settings(ctx, files),
            inputs=c["files"],
            outputs=copy_targets(generate, tabs),
            **PRIVATE,
        )
    return c


def _one_file(files: list[str] | str | None) -> str | None:
    if isinstance(files, str):
        return files
    return files[0] if files and len(files) == 1 else None


@ui_handler
def show_upload(
    ctx: AppContext, files: list[str] | None, name: str | None, *, copy_enabled: bool = True
) -> tuple:
    """An upload: its settings as JSON (or a note), Copy Settings, the latents download, and a
    free voice name when the Voice Name box is empty."""
    hidden = gr.update(value=None, visible=False)
    if not files:
        return "", hidden, gr.update(visible=False), hidden, gr.update()
    file = _one_file(files)
    if file is None:
        first = files[0]
        suggestion = (
            gr.update() if (name or "").strip() else suggest_voice_name(ctx.paths, Path(first).stem)
        )
        return (
            MANY_FILES.format(count=len(files)),
            hidden,
            gr.update(visible=False),
            hidden,
            suggestion,
        )
    info = inspect_upload(ctx.paths, file)
    suggestion = gr.update() if (name or "").strip() else info.suggested_voice
    if info.metadata is None:
        return NO_METADATA, hidden, gr.update(visible=False), hidden, suggestion
    notes = ["Generation settings found in this file."]
    if info.latents_problem:
        notes.append(f"**Embedded latents refused:** {info.latents_problem}")
        gr.Warning(info.latents_problem)
    elif info.latents_file is not None:
        notes.append(
            "It also embeds its voice's latents: download them below as `cond_latents.pth`."
        )
    latents = gr.update(value=str(info.latents_file), visible=True) if info.latents_file else hidden
    return (
        "\n\n".join(notes),
        gr.update(value=info.metadata.to_display_dict(), visible=True),
        gr.update(visible=copy_enabled),
        latents,
        suggestion,
    )


@ui_handler
def import_clicked(
    ctx: AppContext, files: list[str] | None, name: str | None, use_latents: bool
) -> str:
    """Import Voice: create voices/<name>/ and say what was written (and what was left out)."""
    result = import_voice(
        ctx.paths, name or "", files or [], use_embedded_latents=bool(use_latents)
    )
    if result.source == "latents":
        lines = [f"Imported voice **{result.voice}** from the latents embedded in the file."]
    else:
        lines = [
            f"Imported voice **{result.voice}** with {len(result.files)} clip(s) (22.05 kHz mono WAV)."
        ]
    lines += [f"- {note}" for note in result.notes]
    gr.Info(f"Voice '{result.voice}' imported; it is now in the Generate tab's voice list.")
    return "\n".join(lines)


@ui_handler
def copy_settings(ctx: AppContext, files: list[str] | None) -> list[Any]:
    """Copy Settings: the Generate tab's controls from the uploaded file, then switch to it."""
    file = _one_file(files)
    if file is None:
        raise gr.Error("Upload a single generated file first.")
    return copy_updates(ctx, settings_to_copy(read_metadata(file)))
