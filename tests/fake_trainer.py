"""A stand-in for `python -m tortoise.training` in the runner tests: reads --config, then writes a start
record and one train record per step to <run_dir>/metrics.jsonl, a checkpoint (and sample) every
`save` steps, and log lines; SIGTERM stops it after the current step with a checkpoint (exit 0).

Behaviour comes from `fake:` in the yaml: steps, steps_per_epoch, step_s (seconds per step), save,
fail_at (exit 1 with an ERROR line at that step), crash_at (raise: exit 3 with a traceback),
ignore_term (SIGTERM does nothing, so only a kill ends it).
"""

import argparse
import json
import signal
import sys
import time
import wave
from pathlib import Path

import yaml


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args, _ = parser.parse_known_args()
    config_path = Path(args.config)
    data = yaml.safe_load(config_path.read_text())
    fake = data.get("fake", {})
    run_dir = Path(data.get("path", {}).get("run_dir") or config_path.parent / "finetune")
    steps, per_epoch = int(fake.get("steps", 20)), int(fake.get("steps_per_epoch", 4))
    step_s, save = float(fake.get("step_s", 0.05)), int(fake.get("save", 5))
    stop = []
    if not fake.get("ignore_term"):
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (run_dir / "models").mkdir(parents=True, exist_ok=True)
    metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def record(kind, **values):
        metrics.write(json.dumps({"type": kind, **values, "time": time.time()}) + "\n")
        metrics.flush()

    def checkpoint(step):
        (run_dir / "models" / f"{step}_gpt.pth").write_bytes(b"weights")
        with wave.open(str(run_dir / "models" / f"{step}_sample.wav"), "wb") as sample:
            sample.setnchannels(1)
            sample.setsampwidth(2)
            sample.setframerate(24000)
            sample.writeframes(b"\x00\x10" * 2400)
        print("Saving models and training states.", flush=True)
        record("checkpoint", step=step)

    print(f"Start training from epoch: 0, iter: 0 ({config_path})", flush=True)
    record("start", step=0, steps=steps, epoch=0, steps_per_epoch=per_epoch)
    for step in range(1, steps + 1):
        time.sleep(step_s)
        if step == fake.get("fail_at"):
            print("2024-01-01 00:00:00 ERROR: The source model does not fit (fake).", flush=True)
            return 1
        if step == fake.get("crash_at"):
            raise RuntimeError("fake internal error")
        epoch = (step - 1) // per_epoch
        record("train", step=step, steps=steps, epoch=epoch,
               epoch_progress=round(epoch + ((step - 1) % per_epoch + 1) / per_epoch, 4),
               loss_text_ce=3.0 / step, loss_mel_ce=5.0 / step, loss_gpt_total=5.03 / step,
               lr=1e-5, grad_norm=1.0 + step, it_s=1 / step_s, step_time_s=step_s)  # fmt: skip
        print(f"step {step}/{steps}", flush=True)
        if step % save == 0 or stop:
            checkpoint(step)
        if stop:
            print(f"Stop requested at step {step}.", flush=True)
            break
    record("end", step=step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
