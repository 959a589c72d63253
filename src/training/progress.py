"""Reading a training run's output: metrics.jsonl (incrementally) into the status line numbers and the
plot frames, the tail of its log, and its saved checkpoints with their samples."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

GPT_SUFFIX, SAMPLE_SUFFIX = "_gpt.pth", "_sample.wav"
RATE_WINDOW = 20  # steps averaged for it/s and the ETA
MAX_PLOT_POINTS = 1000  # per series; longer runs are thinned evenly (the last point is kept)
LOSS_SERIES = {  # metrics key -> series name in the loss plot
    "loss_text_ce": "text_ce", "loss_mel_ce": "mel_ce", "loss_gpt_total": "total",
    "val_loss_text_ce": "val_text_ce", "val_loss_mel_ce": "val_mel_ce", "val_loss_gpt_total": "val_total",
}  # fmt: skip


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stands, from its metrics.

    Attributes:
        step, steps: optimiser steps done and in total.
        epoch, epochs: the epoch in progress (1-based) and the number of epochs.
        seconds_per_step: mean time of the last RATE_WINDOW steps (None before the first step).
        eta_s: seconds left at that rate.
        lr, loss: of the newest step (loss is loss_gpt_total).
        val_loss: the newest validation loss, if any.
        sampling_step: the step whose checkpoint sample is being rendered now, or None.
        samples_off: why checkpoint samples are off for this run, or None while they are on.
        disk_warning: the newest warning that a save may not fit on the disk, or None.
    """

    step: int
    steps: int
    epoch: int
    epochs: int
    seconds_per_step: float | None = None
    eta_s: float | None = None
    lr: float | None = None
    loss: float | None = None
    val_loss: float | None = None
    sampling_step: int | None = None
    samples_off: str | None = None
    disk_warning: str | None = None

    @property
    def fraction(self) -> float:
        """Steps done as a fraction of all steps (0 to 1)."""
        return min(1.0, self.step / self.steps) if self.steps else 0.0

    @property
    def line(self) -> str:
        """`[Epoch e/E, Step s/S] [rate] [ETA h:mm:ss] [LR x, Loss y]`."""
        parts = [f"[Epoch {self.epoch}/{self.epochs}, Step {self.step}/{self.steps}]"]
        if self.seconds_per_step is None:
            parts.append("[starting]")
        else:
            rate = 1.0 / self.seconds_per_step if self.seconds_per_step > 0 else math.inf
            parts.append(
                f"[{rate:.2f} it/s]" if rate >= 1 else f"[{self.seconds_per_step:.2f} s/it]"
            )
            parts.append(f"[ETA {format_duration(self.eta_s or 0.0)}]")
        values = []
        if self.lr is not None:
            values.append(f"LR {self.lr:.3e}")
        if self.loss is not None:
            values.append(f"Loss {self.loss:.4f}")
        if self.val_loss is not None:
            values.append(f"Val Loss {self.val_loss:.4f}")
        if values:
            parts.append(f"[{', '.join(values)}]")
        if self.sampling_step is not None:
            parts.append(f"[rendering the sample of step {self.sampling_step}]")
        elif self.samples_off is not None:
            parts.append("[samples off]")
        return " ".join(parts)


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved step of a run: its `<step>_gpt.pth` (None once pruned) and `<step>_sample.wav`."""

    step: int
    gpt_path: Path | None
    sample_path: Path | None


@dataclass(frozen=True)
class PlotFrames:
    """Data for the three plots: `losses` (epoch, loss, series), `lr` (epoch, lr), `grad_norm`
    (epoch, grad_norm). The x axis is the fractional epoch (epoch + step in epoch / steps per epoch)."""

    losses: pd.DataFrame
    lr: pd.DataFrame
    grad_norm: pd.DataFrame


class MetricsReader:
    """Reads a growing metrics.jsonl incrementally (only the new bytes on each call).

    A file that was replaced (a fresh run archives the old folder) or truncated is read again from the
    start. As `tortoise.training.read_metrics`: a `start` record drops earlier records of later steps
    (steps redone after a resume), and a torn last line waits for the rest.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._reset(None)

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self._identity = identity
        self._offset = 0
        self._records: list[dict[str, Any]] = []

    @property
    def version(self) -> tuple[Any, ...]:
        """Changes whenever `records()` would return something new (for caches of derived data)."""
        return (self._identity, self._offset)

    def records(self) -> list[dict[str, Any]]:
        """Every record so far (a new list each call)."""
        try:
            stat = self.path.stat()
        except OSError:
            self._reset(None)
            return []
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self._reset(identity)
        if stat.st_size > self._offset:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(stat.st_size - self._offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                self._add(line)
        return list(self._records)

    def _add(self, line: str) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(record, dict):
            return
        if record.get("type") == "start":
            step = record.get("step", 0)
            self._records = [r for r in self._records if r.get("step", 0) <= step]
        self._records.append(record)


def progress_from(records: Sequence[Mapping[str, Any]]) -> TrainingProgress | None:
    """The status numbers from metrics records (None before the trainer's `start` record).

    Epochs = ceil(steps / steps_per_epoch) of the newest `start`; the rate is the mean `step_time_s` of
    the last RATE_WINDOW steps since then, and the ETA is the steps left at that rate.
    """
    starts = [i for i, r in enumerate(records) if r.get("type") == "start"]
    if not starts:
        return None
    start = records[starts[-1]]
    steps = int(start.get("steps") or 0)
    per_epoch = max(1, int(start.get("steps_per_epoch") or 1))
    epochs = max(1, math.ceil(steps / per_epoch))
    train = [r for r in records if r.get("type") == "train"]
    recent = [r for r in records[starts[-1] :] if r.get("type") == "train" and r.get("step_time_s")]
    vals = [
        r for r in records if r.get("type") == "val" and r.get("val_loss_gpt_total") is not None
    ]
    val_loss = float(vals[-1]["val_loss_gpt_total"]) if vals else None
    notes = _sample_notes(records[starts[-1] :])
    if not train:
        epoch = int(start.get("epoch") or 0)
        return TrainingProgress(int(start.get("step") or 0), steps, min(epochs, epoch + 1), epochs,
                                val_loss=val_loss, **notes)  # fmt: skip
    last = train[-1]
    step = int(last.get("step") or 0)
    seconds = None
    if recent:
        window = recent[-RATE_WINDOW:]
        seconds = sum(float(r["step_time_s"]) for r in window) / len(window)
    return TrainingProgress(
        step=step,
        steps=steps,
        epoch=min(epochs, int(last.get("epoch") or 0) + 1),
        epochs=epochs,
        seconds_per_step=seconds,
        eta_s=None if seconds is None else max(0, steps - step) * seconds,
        lr=_number(last.get("lr")),
        loss=_number(last.get("loss_gpt_total")),
        val_loss=val_loss,
        **notes,
    )


def _sample_notes(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`sampling_step` (a `sample_start` not yet followed by its `sample`) and `samples_off` (the
    newest reason) from the records of the current run."""
    sampling = off = disk = None
    for r in records:
        kind = r.get("type")
        if kind == "sample_start":
            sampling = int(r.get("step") or 0)
        elif kind in ("sample", "train", "end"):
            sampling = None
        if kind == "samples_off":
            off = str(r.get("reason") or "")
        if kind == "disk":
            disk = str(r.get("message") or "")
    return {"sampling_step": sampling, "samples_off": off, "disk_warning": disk}


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def plot_frames(
    records: Sequence[Mapping[str, Any]], max_points: int = MAX_PLOT_POINTS
) -> PlotFrames:
    """Plot data from metrics records: loss series (train and `val_` ones), LR and grad norm vs epoch.

    Steps with a non-finite value (stored as null) are left out of that series.
    """
    epoch_at: dict[int, float] = {}
    losses: list[tuple[float, float, str]] = []
    lrs: list[tuple[float, float]] = []
    norms: list[tuple[float, float]] = []
    for r in records:
        kind = r.get("type")
        if kind == "train":
            x = float(r.get("epoch_progress", r.get("epoch", 0)) or 0.0)
            epoch_at[int(r.get("step", 0))] = x
            for key in ("loss_text_ce", "loss_mel_ce", "loss_gpt_total"):
                if (y := _number(r.get(key))) is not None:
                    losses.append((x, y, LOSS_SERIES[key]))
            if (y := _number(r.get("lr"))) is not None:
                lrs.append((x, y))
            if (y := _number(r.get("grad_norm"))) is not None:
                norms.append((x, y))
        elif kind == "val":
            x = epoch_at.get(int(r.get("step", 0)), float(r.get("epoch", 0) or 0.0))
            for key in ("val_loss_text_ce", "val_loss_mel_ce", "val_loss_gpt_total"):
                if (y := _number(r.get(key))) is not None:
                    losses.append((x, y, LOSS_SERIES[key]))
    # explicit dtypes: an empty frame would be `object`, which plots (and stays) as categories
    loss_frame = pd.DataFrame(losses, columns=["epoch", "loss", "series"]).astype(
        {"epoch": float, "loss": float, "series": str}
    )
    if len(loss_frame):
        loss_frame = pd.concat(
            [_thin(group, max_points) for _, group in loss_frame.groupby("series", sort=False)],
            ignore_index=True,
        )
    return PlotFrames(
        losses=loss_frame,
        lr=_thin(pd.DataFrame(lrs, columns=["epoch", "lr"], dtype=float), max_points),
        grad_norm=_thin(
            pd.DataFrame(norms, columns=["epoch", "grad_norm"], dtype=float), max_points
        ),
    )


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most `max_points` evenly spaced rows, always keeping the last one."""
    if len(frame) <= max_points:
        return frame.reset_index(drop=True)
    stride = math.ceil(len(frame) / max_points)
    keep = list(range(0, len(frame), stride))
    if keep[-1] != len(frame) - 1:
        keep.append(len(frame) - 1)
    return frame.iloc[keep].reset_index(drop=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def format_duration(seconds: float) -> str:
    """`H:MM:SS` (hours grow past 24)."""
    total = max(0, int(round(seconds)))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def tail_lines(path: Path, count: int, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `count` lines of a text file (carriage-return progress redraws keep their last state)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-count:] if count > 0 else []


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    """Saved steps of a run folder, newest first: `models/<step>_gpt.pth` and `<step>_sample.wav`."""
    models = Path(run_dir) / "models"
    if not models.is_dir():
        return []
    gpts: dict[int, Path] = {}
    samples: dict[int, Path] = {}
    for path in models.iterdir():
        for suffix, found in ((GPT_SUFFIX, gpts), (SAMPLE_SUFFIX, samples)):
            stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else ""
            if stem.isdigit() and path.is_file():
                found[int(stem)] = path
    steps = sorted(set(gpts) | set(samples), reverse=True)
    return [CheckpointInfo(s, gpts.get(s), samples.get(s)) for s in steps]
