"""Start the AI Voice Cloning web UI: parse the flags, read config/exec.json (flags win, the file
is not rewritten), build the AppContext and the UI, and serve it with the queue on. TorToiSe loads
after the page is up (or on first use with --defer-tts-load).

    python app.py [--listen 127.0.0.1:7860/] [--defer-tts-load] [--smoke-test-seconds 5] ...
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import socket
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
from src.settings import (
    BLANK_PASSWORD_HELP,
    AppSettings,
    apply_cli_overrides,
    build_arg_parser,
    load_settings,
)

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
SERVER_START_TIMEOUT_S = 60.0
DEFAULT_SHARE_USERNAME = "admin"
GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters


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


def is_loopback_host(host: str) -> bool:
    """True when `host` serves this machine only (127.0.0.0/8, ::1, or a name that resolves only to
    them). The wildcard 0.0.0.0/:: and every other address are reachable from other machines; a name
    that cannot be resolved counts as public too (the safe side)."""
    name = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


@dataclass(frozen=True)
class Access:
    """Who may use the served UI.

    Attributes:
        auth: (username, password) for Gradio's login, or None for no login.
        public: the UI is reachable from other machines (--share or a non-loopback --listen).
        generated: the password was made up for this run (print it, never log it).
    """

    auth: tuple[str, str] | None
    public: bool
    generated: bool = False

    @property
    def open_to_everyone(self) -> bool:
        return self.public and self.auth is None


def resolve_access(
    settings: AppSettings,
    host: str,
    *,
    make_password: Callable[[], str] = lambda: secrets.token_urlsafe(GENERATED_PASSWORD_BYTES),
) -> Access:
    """Decide the login: a configured password always applies; a public UI without one gets a random
    password, unless Public Without Login is on; a loopback-only UI needs no login.

    Raises:
        AppError: the configured password is only spaces.
    """
    password = settings.share_password
    if password and not password.strip():
        raise AppError(f"Share Password (--share-password) is only spaces. {BLANK_PASSWORD_HELP}")
    username = settings.share_username.strip() or DEFAULT_SHARE_USERNAME
    public = settings.share or not is_loopback_host(host)
    if password:
        return Access((username, password), public)
    if not public or settings.public_without_login:
        return Access(None, public)
    return Access((username, make_password()), public, generated=True)


def announce_access(access: Access, where: str) -> None:
    """Tell the person at the console how to get in (the password is printed, never logged), or warn
    loudly that a public UI has no login."""
    if access.open_to_everyone:
        bar = "!" * 78
        log.warning(
            "\n%s\nWARNING: the UI is served to other machines (%s) WITHOUT A LOGIN.\nAnyone who "
            "reaches it can use your GPU, read your voices and results, and change settings.\n"
            "Remove --public-without-login (Settings: Public Without Login) to ask for a login.\n%s",
            bar, where, bar,
        )  # fmt: skip
    elif access.generated and access.auth is not None:
        username, password = access.auth
        bar = "=" * 78
        print(  # not a log line: logs are kept and shared, the password must not be in them
            f"{bar}\nThe UI is served to other machines ({where}), so it asks for a login.\n"
            f"    Username: {username}\n    Password: {password}\n"
            "This password is new at every start. Set Share Password in Settings (--share-password) "
            "to choose one.\n" + bar,
            flush=True,
        )


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
    given_password = getattr(args, "share_password", None)
    if given_password is not None and not given_password.strip():
        raise AppError(f"--share-password is empty or only spaces. {BLANK_PASSWORD_HELP}")
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
    """Build the UI for `ctx` and serve it in the background with the queue on.

    A public UI (--share, or --listen on an address other machines reach) asks for a login; see
    `resolve_access`.

    Raises:
        AppError: a bad Listen value or a Share Password of only spaces.
    """
    import gradio as gr  # imported here so that `import app` stays cheap

    from src.ui.app_ui import build_ui

    settings: AppSettings = ctx.settings
    listen = parse_listen(settings.listen)
    access = resolve_access(settings, listen.host)
    demo = build_ui(ctx)
    demo.queue(default_concurrency_limit=settings.concurrency_count)
    ctx.job_runner.start()  # resumes project renders a crash or restart interrupted
    allowed = [str(ctx.paths.results_dir), str(ctx.paths.voices_dir)]
    where = "a public share link" if settings.share else f"listening on {listen.host}"
    announce_access(access, where)
    if listen.path != "/":
        return _serve_mounted(ctx, demo, listen, access, allowed, gr)
    _, url, share_url = demo.launch(
        server_name=listen.host,
        server_port=listen.port,
        share=settings.share,
        auth=access.auth,
        auth_message=_auth_message(access),
        prevent_thread_lock=True,
        show_error=True,
        allowed_paths=allowed,
        quiet=False,
    )
    if share_url:
        log.info("Public link: %s", share_url)
    return RunningApp(ctx, demo, url, _closers=[ctx.job_runner.stop, demo.close])


def _auth_message(access: Access) -> str | None:
    if access.generated:
        return "Log in with the username and password printed in the console that started the app."
    return None


def _serve_mounted(ctx, demo, listen: ListenAddress, access: Access, allowed, gr) -> RunningApp:
    """Serve the UI under a sub-path (`--listen host:port/path`) with uvicorn, as mrq's UI did."""
    import fastapi
    import uvicorn

    app = gr.mount_gradio_app(
        fastapi.FastAPI(),
        demo,
        path=listen.path,
        auth=access.auth,
        auth_message=_auth_message(access),
        allowed_paths=allowed,
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


def _page_answers(url: str, *, within_s: float = 120.0) -> bool:
    """True once the page answers HTTP 200; retried until `within_s` (a busy machine renders slowly)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local URL
                return response.status == 200
        except OSError as error:
            if time.monotonic() >= deadline:
                log.error("The page at %s did not answer: %s", url, error)
                return False
            time.sleep(0.5)


def _set_environment(paths: AppPaths, settings: AppSettings) -> None:
    """Keep helper-model downloads under models/, honour "Only Load Models Locally" (if unset)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_CACHE", str(paths.transformers_dir))
    if settings.models_local_only:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _log_doctor(ctx: AppContext) -> None:
    """The installation check at start-up: problems and warnings in the log (all of it in Settings)."""
    from src.doctor import run_doctor

    report = run_doctor(ctx.paths, ctx.settings)
    log.info("Installation check: %s Details in the Settings tab.", report.summary())
    for finding in report.problems:
        log.warning("%s: %s", finding.area, finding.message)
    for finding in report.warnings:
        log.info("%s: %s", finding.area, finding.message)


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
        _log_doctor(ctx)
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
