"""Command line: `python -m tortoise.training --config training/<voice>/train.yaml [--resume <state>]`.

Logs to stdout (metrics as `Training Metrics: {json}` lines; everything also in <run>/metrics.jsonl) and
exits 0 when done, 1 with a one-paragraph message for a problem the user can fix, 3 for an internal error,
130 when interrupted. SIGTERM (Windows: CTRL_BREAK) asks a single-process run to stop: after the current
step it saves a checkpoint and exits 0; during a checkpoint sample the sample is cancelled; during a save
the save is abandoned (the previous checkpoint stays the newest complete one) and it exits 0. A second
signal interrupts at once.
Multi-GPU: `torchrun --nproc_per_node N -m tortoise.training --config ...`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 0, 1, 3, 130


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tortoise.training",
                                     description="Fine-tune the TorToiSe autoregressive model on a dataset.")
    parser.add_argument("--config", required=True, help="train.yaml written by the Training tab")
    parser.add_argument("--resume", default=None, help="training_state/<step>.state to continue from")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--models-dir", default=None,
                        help="folder with dvae.pth, tokenizer.json, mel_norms.pth (default: the config's "
                             "path.models_dir, else TORTOISE_MODELS_DIR or models/tortoise)")
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast")
    parser.add_argument("--no-sample", action="store_true", help="do not synthesise a sample at each save")
    parser.add_argument("--overrides", default=None, metavar="YAML",
                        help="a YAML file merged into the configuration (nested keys win), e.g. "
                             "networks.gpt.kwargs / networks.dvae.kwargs for small test models")
    return parser.parse_args(argv)


def _install_stop_handler(log: logging.Logger):
    """SIGTERM (CTRL_BREAK on Windows) goes to the returned StopControl (see tortoise.training.control).
    Only for a single process: under torchrun the ranks would stop at different steps, so there the
    default (terminate) stays."""
    from tortoise.training.control import SAMPLING, SAVING, StopControl

    stop = StopControl()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return stop
    what = {SAVING: "abandoning the save in progress", SAMPLING: "cancelling the checkpoint sample"}

    def request_stop(signum: int, frame: object) -> None:
        if not stop():
            doing = what.get(stop.phase, "saving a checkpoint after the current step")
            log.info("Stop requested: %s.", doing)
        stop.request()

    for name in ("SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), request_stop)
    return stop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stdout,
        format=f"%(asctime)s {'' if rank == 0 else f'[rank {rank}] '}%(levelname)s: %(message)s")
    log = logging.getLogger("tortoise.training")

    from pathlib import Path

    from tortoise.download import default_models_dir
    from tortoise.errors import TortoiseError
    from tortoise.training import load_config, train
    from tortoise.training.control import SaveAbandoned

    stop = _install_stop_handler(log)
    try:
        overrides = {}
        if args.resume:
            overrides["resume_state"] = Path(args.resume)
        if args.bf16:
            overrides["use_bf16"], overrides["use_fp16"] = True, False
        if args.no_sample:
            overrides["sample_enabled"] = False
        merge = _read_overrides(args.overrides) if args.overrides else None
        config = load_config(args.config, merge=merge, **overrides)
        if args.models_dir or config.models_dir is None:
            config = config.replace(models_dir=Path(args.models_dir or default_models_dir()))
        train(config, device=args.device, should_stop=stop)
    except TortoiseError as e:
        log.error("%s", e)
        return EXIT_USER_ERROR
    except SaveAbandoned:
        log.info("Stopped during a save; that checkpoint was not written. The newest complete checkpoint "
                 "and training state are intact.")
        return EXIT_OK
    except KeyboardInterrupt:
        log.error("Interrupted; resume from the newest training_state/<step>.state.")
        return EXIT_INTERRUPTED
    except Exception:  # boundary: the log gets the traceback, the caller a distinct exit code
        log.exception("Training failed with an internal error.")
        return EXIT_INTERNAL_ERROR
    return EXIT_OK


def _read_overrides(path: str) -> dict:
    from pathlib import Path

    import yaml

    from tortoise.training.errors import TrainingError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TrainingError(f"The overrides file {path} cannot be read ({e}).") from e
    if not isinstance(data, dict):
        raise TrainingError(f"The overrides file {path} is not a YAML mapping.")
    return data


if __name__ == "__main__":
    sys.exit(main())
