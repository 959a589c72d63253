"""The app with the tiny golden models as a separate process, for the kill-and-resume test:

    python -m tests.project_app --root DIR --listen 127.0.0.1:PORT

Every tts() call is logged to DIR/tts_calls.log ("start <text>" / "end <text>"), so a test can count how
often each segment was rendered across a crash.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from tests.app_doubles import TINY_TTS_OPTIONS, tiny_tts
from tests.conftest import TinyModels


def logged(model, log_path: Path):
    render = model.tts
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock, log_path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")
            log.flush()

    def tts(text, *args, **kwargs):
        write(f"start {text}")
        result = render(text, *args, **kwargs)
        write(f"end {text}")
        return result

    model.tts = tts
    return model


def main(argv: list[str]) -> int:
    import app

    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    model = logged(tiny_tts(TinyModels()), args.root / "tts_calls.log")
    running = app.start(
        ["--root", str(args.root), "--listen", args.listen, "--defer-tts-load"]
        + ["--output-sample-rate", "24000", "--concurrency-count", "1"],
        tts_loader=lambda: model,
        tts_options=TINY_TTS_OPTIONS,
    )
    print(f"serving {running.url}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def tiny_model():
    """A TextToSpeech over the tiny golden models (the loader Ray workers import in the tests)."""
    return tiny_tts(TinyModels())
