"""Structured training metrics: one JSON object per line in `<run>/metrics.jsonl` (read by the Training
tab), mirrored to the log as `Training Metrics: {...}` / `Validation Metrics: {...}` like mrq's trainer.

Record types (`"type"` field):
    start       a run (fresh or resumed) begins: step (last finished, 0 when fresh), steps, epoch,
                steps_per_epoch, batch_size, world_size, resumed_from. Readers drop earlier records with a
                step greater than this one (they belonged to steps redone after a resume).
    train       one optimiser step: step, steps, epoch, epoch_progress (epoch + fraction), loss_text_ce,
                loss_mel_ce, loss_gpt_total, lr, grad_norm, it_s, step_time_s, skipped, time.
    val         one validation pass: step, epoch, val_loss_text_ce, val_loss_mel_ce, val_loss_gpt_total,
                clips, time.
    checkpoint  a save: step, gpt (path), state (path), sample (path or null), pruned (steps), time.
    end         the run finished: step, time.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LOG_PREFIX = {"train": "Training Metrics", "val": "Validation Metrics"}


class MetricsLog:
    """Appends records to metrics.jsonl (flushed per line) and echoes them to the log.

    Args:
        path: the jsonl file; None writes nothing (non-zero ranks).
        print_freq: train records are echoed in full to the log every this many steps (all go to the
            file); the other steps get one short line each.
    """

    def __init__(self, path: Path | None, print_freq: int = 1):
        self.path = path
        self.print_freq = max(1, print_freq)
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, kind: str, **values: Any) -> dict[str, Any]:
        """Record one event; non-finite floats become null (JSON has no NaN). Returns the record."""
        record = {"type": kind, **{k: _clean(v) for k, v in values.items()}}
        record.setdefault("time", round(time.time(), 3))
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            if kind != "train" or record.get("step", 0) % self.print_freq == 0 or record.get("step") == 1:
                log.info("%s: %s", _LOG_PREFIX.get(kind, kind.capitalize()), json.dumps(record))
            else:  # one short line per step, so a console tail moves with every step
                log.info("Step %s/%s: loss %s", record.get("step"), record.get("steps", "?"),
                         _short(record.get("loss_gpt_total")))
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl with steps redone after a resume removed (see the module docstring).

    A torn last line (the process was killed mid-write) is ignored.
    """
    records: list[dict[str, Any]] = []
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "start":
            records = [r for r in records if r.get("step", 0) <= record.get("step", 0)]
        records.append(record)
    return records


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _short(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
