"""Training > Run Training: pick a saved configuration; Train / Stop / Reconnect a trainer subprocess;
the status line, a console tail, live loss / LR / grad-norm plots (a gr.Timer refreshes them while the run
is live; Reconnect reloads them from metrics.jsonl) and the checkpoints' samples."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from src.context import AppContext
from src.errors import InvalidInput
from src.training.runner import TrainingStatus, configured_voices, unload_for_training
from src.ui.errors import ui_handler
from src.ui.tab_training_dataset import PRIVATE, clip_audio, keep_choice

QUIET: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
# What a refresh shows (run_view's values, in order) and reads (the run, buffer size, checkpoint).
VIEW_KEYS = ("run_status", "run_message", "run_console", "run_loss_plot", "run_lr_plot",
             "run_grad_plot", "run_checkpoint", "run_latest")  # fmt: skip
WATCH_KEYS = ("run_voice", "run_buffer", "run_checkpoint", "run_latest")
SAMPLED = ":sample"  # suffix of a checkpoint choice whose sample exists (the value changes when it appears)
PLOT_HEIGHT = 260
# Every series named up front: the plot fixes its colours from the first data it gets (often none).
LOSS_COLORS = {
    "text_ce": "#1f77b4", "mel_ce": "#ff7f0e", "total": "#2ca02c",
    "val_text_ce": "#9ecae1", "val_mel_ce": "#fdae6b", "val_total": "#98df8a",
}  # fmt: skip
TIMER_S = 2.0
SETTINGS_NOTE = (
    "Checkpoints are saved as `training/<voice>/finetune/models/<step>_gpt.pth`; pick one in "
    "**Settings → Autoregressive Model** to generate with it."
)


def layout(ctx: AppContext, c: dict[str, Any]) -> None:
    """Lay out the sub-tab; components go into `c` as `run_*`."""
    configs = configured_voices(ctx.paths)
    running = ctx.train_runner.running_voices()
    voice = running[0] if running else (configs[0] if configs else None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            c["run_voice"] = gr.Dropdown(
                choices=configs, value=voice, label="Training Configuration",
                info="training/<voice>/train.yaml files saved in Generate Configuration.",
                elem_id="train-run-voice",
            )  # fmt: skip
            c["run_refresh"] = gr.Button("Refresh Configurations", size="sm")
            with gr.Row():
                c["run_train"] = gr.Button("Train", variant="primary", elem_id="train-run-train")
                c["run_stop"] = gr.Button("Stop", variant="stop", elem_id="train-run-stop")
                c["run_reconnect"] = gr.Button("Reconnect", elem_id="train-run-reconnect")
            c["run_buffer"] = gr.Slider(
                4, 32, value=8, step=1, label="Console Buffer Size", elem_id="train-run-buffer"
            )
            c["run_checkpoint"] = gr.Dropdown(
                choices=[], value=None, label="Checkpoint Samples", elem_id="train-run-checkpoint",
                info="Each saved step; its sample (if written) plays below.",
            )  # fmt: skip
            c["run_sample"] = gr.Audio(
                label="Checkpoint Sample", interactive=False, elem_id="train-run-sample"
            )
            # the newest step with a sample seen so far: a newer one is selected (and played) as it lands
            c["run_latest"] = gr.Textbox(visible=False, elem_id="train-run-latest")
            gr.Markdown(SETTINGS_NOTE)
        with gr.Column(scale=2):
            c["run_status"] = gr.Textbox(
                label="Status", interactive=False, elem_id="train-run-status", max_lines=1
            )
            c["run_message"] = gr.Markdown(elem_id="train-run-message")
            c["run_console"] = gr.Textbox(
                label="Console Output", lines=8, max_lines=32, interactive=False,
                elem_id="train-run-console",
            )  # fmt: skip
            c["run_loss_plot"] = gr.LinePlot(
                x="epoch", y="loss", color="series", color_map=LOSS_COLORS, title="Loss",
                x_title="Epoch", height=PLOT_HEIGHT, elem_id="train-run-loss",
            )  # fmt: skip
            with gr.Row():
                c["run_lr_plot"] = gr.LinePlot(
                    x="epoch", y="lr", title="Learning Rate", x_title="Epoch",
                    height=PLOT_HEIGHT, elem_id="train-run-lr",
                )  # fmt: skip
                c["run_grad_plot"] = gr.LinePlot(
                    x="epoch", y="grad_norm", title="Gradient Norm", x_title="Epoch",
                    height=PLOT_HEIGHT, elem_id="train-run-grad",
                )  # fmt: skip
    c["run_timer"] = gr.Timer(TIMER_S, active=bool(running))


def run_view(
    ctx: AppContext,
    voice: str | None,
    buffer: float,
    checkpoint: str | None,
    latest: str | None = None,
    status: TrainingStatus | None = None,
) -> list[Any]:
    """Everything Run Training shows for `voice`: status, message, console, 3 plots, checkpoints.

    Returns:
        [status line, message, console, loss frame, lr frame, grad-norm frame, checkpoint update,
        newest sampled step].
    """
    if not voice:
        return ["", "", "", None, None, None, gr.update(choices=[], value=None), ""]
    runner = ctx.train_runner
    status = status or runner.status(voice)
    frames = runner.plot_frames(voice)
    checkpoints = runner.checkpoints(voice)
    choices = [(f"Step {ck.step}" + ("" if ck.sample_path else " (no sample)"),
                f"{ck.step}{SAMPLED if ck.sample_path else ''}") for ck in checkpoints]  # fmt: skip
    value, newest = pick_checkpoint(checkpoints, checkpoint, latest)
    return [
        status_text(status),
        message_text(status),
        runner.console(voice, int(buffer or 8)),
        loss_plot_value(frames.losses),
        frames.lr,
        frames.grad_norm,
        gr.update(choices=choices, value=value),
        newest,
    ]


def pick_checkpoint(checkpoints: list[Any], chosen: str | None, latest: str | None) -> tuple[str | None, str]:
    """(the checkpoint value to select, the newest sampled step as text).

    A sample newer than `latest` (the newest one the page has seen) is selected, so it plays as it
    lands; otherwise the chosen step stays selected (its value gains SAMPLED when its sample appears,
    which plays it too); else the newest step."""
    by_step = {str(ck.step): f"{ck.step}{SAMPLED if ck.sample_path else ''}" for ck in checkpoints}
    sampled = [ck.step for ck in checkpoints if ck.sample_path]
    newest = str(max(sampled)) if sampled else ""
    if newest and (not latest or not latest.isdigit() or int(newest) > int(latest)):
        return by_step[newest], newest
    step = (chosen or "").split(":")[0]
    if step in by_step:
        return by_step[step], newest
    return (by_step[str(checkpoints[0].step)] if checkpoints else None), newest


def loss_plot_value(losses: pd.DataFrame) -> pd.DataFrame:
    """The loss frame with one empty (NaN) point per series: the plot fixes its colour legend from
    the first data it draws, so every series must be named in it from the start."""
    x = float(losses["epoch"].min()) if len(losses) else 0.0
    names = list(LOSS_COLORS)
    placeholders = pd.DataFrame({"epoch": [x] * len(names), "loss": [float("nan")] * len(names),
                                 "series": names})  # fmt: skip
    return pd.concat([placeholders.astype(losses.dtypes.to_dict()), losses], ignore_index=True)


def status_text(status: TrainingStatus) -> str:
    """`[xx.x%] [Epoch e/E, Step s/S] [...]`, or the state before the first step."""
    if status.progress is None:
        return "Starting..." if status.is_running else ""
    return f"[{status.progress.fraction * 100:.1f}%] {status.progress.line}"


def message_text(status: TrainingStatus) -> str:
    """The status message; log lines after a failure go into a code block."""
    first, _, rest = status.message.partition("\n")
    return f"{first}\n```\n{rest}\n```" if rest else first


@ui_handler
def train_clicked(ctx: AppContext, voice: str | None) -> None:
    """Train: start the run (the view follows on success; a refusal is one pop-up)."""
    if not voice:
        raise InvalidInput(
            "Choose a Training Configuration first (save one in Generate Configuration)."
        )
    note = unload_for_training(ctx.engine)
    ctx.train_runner.start(voice)
    gr.Info(f"Training '{voice}' started. {note}".strip())


@ui_handler
def stop_clicked(ctx: AppContext, voice: str | None) -> None:
    """Stop: the trainer saves a checkpoint and exits (the timer shows when it has)."""
    if not voice:
        raise InvalidInput("Choose the Training Configuration to stop.")
    gr.Info(ctx.train_runner.stop(voice))


@ui_handler
def reconnect_clicked(
    ctx: AppContext, voice: str | None, buffer: float, checkpoint: str | None, latest: str | None = None
) -> list:
    """Reconnect -> reload everything from the run's files; the timer runs while the run is live."""
    if not voice:
        raise InvalidInput("Choose a Training Configuration first.")
    status = ctx.train_runner.status(voice)
    if not status.is_running:
        last = status.message.partition("\n")[0] if status.state != "idle" else ""
        gr.Warning(f"Training is not in progress for '{voice}'. {last}".strip())
    return [*run_view(ctx, voice, buffer, checkpoint, latest, status), gr.Timer(active=status.is_running)]


@ui_handler
def tick(
    ctx: AppContext, voice: str | None, buffer: float, checkpoint: str | None, latest: str | None = None
) -> list[Any]:
    """Timer refresh while a run is live; the last tick after it ends says how it ended."""
    status = ctx.train_runner.status(voice) if voice else None
    view = run_view(ctx, voice, buffer, checkpoint, latest, status)
    if status is None or not status.is_running:
        if status is not None and status.state == "failed":
            gr.Warning(status.message.partition("\n")[0])
        elif status is not None and status.state in ("finished", "stopped"):
            gr.Info(status.message)
        return [*view, gr.Timer(active=False)]
    return [*view, gr.Timer(active=True)]


@ui_handler
def show_sample(ctx: AppContext, voice: str | None, step: str | None) -> Any:
    """The sample WAV of a checkpoint step, if it was written."""
    if not voice or not step:
        return None
    step = str(step).split(":")[0]
    found = [ck for ck in ctx.train_runner.checkpoints(voice) if str(ck.step) == step]
    return clip_audio(found[0].sample_path) if found and found[0].sample_path else None


@ui_handler
def attach(
    ctx: AppContext, voice: str | None, buffer: float, checkpoint: str | None, latest: str | None = None
) -> list[Any]:
    """When the page or the tab opens: the configuration list (a live run first) and its view,
    with the timer on while that run is live (re-attaching after a reload needs no click)."""
    configs = configured_voices(ctx.paths)
    running = ctx.train_runner.running_voices()
    chosen = voice if voice in running else (running[0] if running else keep_choice(configs, voice))
    view = run_view(ctx, chosen, buffer, checkpoint, latest)
    return [gr.update(choices=configs, value=chosen), *view, gr.Timer(active=bool(running))]


def view_outputs(c: dict[str, Any]) -> list[Any]:
    """The components `run_view` fills, then the timer (the outputs of attach without run_voice)."""
    return [*(c[k] for k in VIEW_KEYS), c["run_timer"]]


def wire(ctx: AppContext, c: dict[str, Any]) -> None:
    """Wire the sub-tab's events (the timer included)."""
    view = [c[k] for k in VIEW_KEYS]
    watch = [c[k] for k in WATCH_KEYS]
    # Train and Stop have no outputs, so a refusal is a pop-up and not an Error badge on the view
    c["run_train"].click(
        lambda voice: train_clicked(ctx, voice), inputs=c["run_voice"], api_name="start_training"
    ).success(
        lambda *args: reconnect_view(ctx, *args),
        inputs=watch,
        outputs=[*view, c["run_timer"]],
        **PRIVATE,
    )
    c["run_stop"].click(
        lambda voice: stop_clicked(ctx, voice), inputs=c["run_voice"], api_name="stop_training"
    )
    c["run_reconnect"].click(
        lambda *args: reconnect_clicked(ctx, *args),
        inputs=watch,
        outputs=[*view, c["run_timer"]],
        api_name="reconnect_training",
    )
    c["run_timer"].tick(lambda *args: tick(ctx, *args), inputs=watch, outputs=[*view, c["run_timer"]],
                        **QUIET)  # fmt: skip
    c["run_voice"].change(
        lambda *args: reconnect_view(ctx, *args), inputs=watch, outputs=[*view, c["run_timer"]],
        **PRIVATE,
    )  # fmt: skip
    for event in (c["run_refresh"].click, c["run_tab"].select):
        event(lambda *args: attach(ctx, *args), inputs=watch,
              outputs=[c["run_voice"], *view, c["run_timer"]], **PRIVATE)  # fmt: skip
    c["run_checkpoint"].change(
        lambda voice, step: show_sample(ctx, voice, step),
        inputs=[c["run_voice"], c["run_checkpoint"]],
        outputs=c["run_sample"],
        **PRIVATE,
    )


@ui_handler
def reconnect_view(
    ctx: AppContext, voice: str | None, buffer: float, checkpoint: str | None, latest: str | None = None
) -> list:
    """Picking a configuration shows its run (live or last); the timer runs while it is live."""
    live = bool(voice) and ctx.train_runner.is_running(voice)
    return [*run_view(ctx, voice, buffer, checkpoint, latest), gr.Timer(active=live)]
