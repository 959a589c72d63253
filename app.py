"""Start the AI Voice Cloning web UI: parse the flags, read config/exec.json (flags win, the file
is not rewritten), build the AppContext and the UI, and serve it with the queue on. TorToiSe loads
after the page is up (or on first use with --defer-tts-load).

    python app.py [--listen 127.0.0.1:7860/] [--defer-tts-load] [--smoke-test-seconds 5] ...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.context import AppContext
from src.errors import AppError
from src.paths import AppPaths
from src.settings import AppSettings, apply_cli_overrides, build_arg_parser, load_settings

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
SERVER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ListenAddress:
    """Where to serve: host, port (None = Gradio's default) and URL path ("/" = the root)."""

    host: str = DEFAULT_HOST
    port: int | None = None
    path: str = "/"


def parse_listen(text: str | None) -> ListenAddress:
    """Parse the Listen setting `[host][:port][/path]` (mrq's format), e.g. `0.0.0.0:8080/tts`.

    Raises:
        AppError: the port is not a number from 1 to 65535.
    """
    if not text or not text.strip():
        return ListenAddress()
    text = text.strip()
    address, slash, path = text.partition("/")
    host, _, port_text = address.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise AppError(f"Listen '{text}': the port must be a number from 1 to 65535.")
        port = int(port_text)
    return ListenAddress(host or DEFAULT_HOST, port, "/" + path.strip("/") if slash else "/")


def build_parser() -> argparse.ArgumentParser:
    """One flag per setting (see src.settings), plus the start-up-only flags."""
    parser = build_arg_parser()
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="Installation folder (default: this one)."
    )
    parser.add_argument(
        "--smoke-test-seconds",
        type=float,
        default=None,
        metavar="N",
        help="Serve the page, check that it answers, exit after N seconds (never loads TorToiSe).",
    )
    return parser


def load_context(
    args: argparse.Namespace,
    *,
    tts_loader: Callable[[], Any] | None = None,
    tts_options: dict[str, Any] | None = None,
) -> AppContext:
    """Settings = defaults, then config/exec.json, then the flags given (never written back)."""
    paths = AppPaths.from_root(args.root)
    paths.ensure()
    loaded = load_settings(paths.settings_file)
    settings = apply_cli_overrides(loaded.value, args)
    return AppContext(
        paths,
        settings,
        tts_loader=tts_loader,
        tts_options=dict(tts_options or {}),
        startup_warnings=tuple(loaded.warnings),
    )


@dataclass
class RunningApp:
    """A served UI: its context, Blocks and URL; `close()` stops the server."""

    ctx: AppContext
    demo: Any
    url: str
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in self._closers:
            closer()
        self._closers.clear()


def start(
    argv: Sequence[str] | None = None,
    *,
    tts_loader: Callable[[], Any] | None = None,
    tts_options: dict[str, Any] | None = None,
) -> RunningApp:
    """Build and serve the app without blocking (the test hook: tests pass a tiny `tts_loader`).

    Args:
        argv: command-line arguments (default: none, i.e. settings from config/exec.json).
        tts_loader: builds the TextToSpeech instead of loading the official models.
        tts_options: GenerationOptions fields added to every generation (tests shorten outputs).
    """
    args = build_parser().parse_args(list(argv or []))
    return serve(load_context(args, tts_loader=tts_loader, tts_options=tts_options))


def serve(ctx: AppContext) -> RunningApp:
    """Build the UI for `ctx` and serve it in the background with the queue on."""
    import gradio as gr  # imported here so that `import app` stays cheap

    from src.ui.app_ui import build_ui

    settings: AppSettings = ctx.settings
    listen = parse_listen(settings.listen)
    demo = build_ui(ctx)
    demo.queue(default_concurrency_limit=settings.concurrency_count)
    ctx.job_runner.start()  # resumes project renders a crash or restart interrupted
    auth = (settings.share_username, settings.share_password) if settings.share_password else None
    allowed = [str(ctx.paths.results_dir), str(ctx.paths.voices_dir)]
    if listen.path != "/":
        return _serve_mounted(ctx, demo, listen, auth, allowed, gr)
    _, url, share_url = demo.launch(
        server_name=listen.host,
        server_port=listen.port,
        share=settings.share,
        auth=auth,
        prevent_thread_lock=True,
        show_error=True,
        allowed_paths=allowed,
        quiet=False,
    )
    if share_url:
        log.info("Public link: %s", share_url)
    return RunningApp(ctx, demo, url, _closers=[ctx.job_runner.stop, demo.close])


def _serve_mounted(ctx, demo, listen: ListenAddress, auth, allowed, gr) -> RunningApp:
    """Serve the UI under a sub-path (`--listen host:port/path`) with uvicorn, as mrq's UI did."""
    import fastapi
    import uvicorn

    app = gr.mount_gradio_app(
        fastapi.FastAPI(), demo, path=listen.path, auth=auth, allowed_paths=allowed
    )
    config = uvicorn.Config(
        app, host=listen.host, port=listen.port or DEFAULT_PORT, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise AppError(f"The server could not start on {listen.host}:{config.port}.")

    def close() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    url = f"http://{listen.host}:{config.port}{listen.path}/"
    return RunningApp(ctx, demo, url, [ctx.job_runner.stop, close])


def _page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own local URL
            return response.status == 200
    except OSError as error:
        log.error("The page at %s did not answer: %s", url, error)
        return False


def _set_environment(paths: AppPaths, settings: AppSettings) -> None:
    """Keep helper-model downloads under models/, honour "Only Load Models Locally" (if unset)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_CACHE", str(paths.transformers_dir))
    if settings.models_local_only:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app until Ctrl+C (or for --smoke-test-seconds). Returns the exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "urllib3"):  # one line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        ctx = load_context(args)
        _set_environment(ctx.paths, ctx.settings)
        running = serve(ctx)
    except AppError as error:
        log.error("%s", error)
        return 2
    smoke_s = args.smoke_test_seconds
    try:
        if smoke_s is not None:
            ok = _page_answers(running.url)
            time.sleep(max(0.0, smoke_s))
            log.info("Smoke test %s: served %s", "passed" if ok else "FAILED", running.url)
            return 0 if ok else 1
        if not running.ctx.settings.do_not_load_tts_on_startup:
            running.ctx.engine.load_in_background()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("Stopping")
        return 0
    finally:
        running.close()


if __name__ == "__main__":
    sys.exit(main())
