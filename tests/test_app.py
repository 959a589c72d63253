"""app.py: Listen parsing, settings precedence (defaults < exec.json < flags, file untouched), and
the smoke-test start that serves the page and exits cleanly."""

import json
import logging
import socket

import pytest

import app
from src.errors import AppError
from src.settings import AppSettings, save_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, app.ListenAddress("127.0.0.1", None, "/")),
        ("", app.ListenAddress("127.0.0.1", None, "/")),
        ("0.0.0.0:8080", app.ListenAddress("0.0.0.0", 8080, "/")),
        ("127.0.0.1:7860/", app.ListenAddress("127.0.0.1", 7860, "/")),
        (":9000/tts/", app.ListenAddress("127.0.0.1", 9000, "/tts")),
        ("myhost/sub/path", app.ListenAddress("myhost", None, "/sub/path")),
    ],
)
def test_parse_listen(text, expected):
    assert app.parse_listen(text) == expected


def test_parse_listen_rejects_a_bad_port():
    with pytest.raises(AppError, match="port"):
        app.parse_listen("localhost:http")


def test_flags_override_exec_json_without_rewriting_it(tmp_path):
    config = tmp_path / "config" / "exec.json"
    save_settings(config, AppSettings(concurrency_count=3, low_vram=True, output_volume=0.5))
    before = config.read_text()
    args = app.build_parser().parse_args(
        ["--root", str(tmp_path), "--concurrency-count", "5", "--no-low-vram"]
    )
    ctx = app.load_context(args)
    assert ctx.settings.concurrency_count == 5 and ctx.settings.low_vram is False
    assert ctx.settings.output_volume == 0.5  # from the file
    assert config.read_text() == before
    assert not ctx.engine.is_loaded


def test_every_setting_with_a_flag_is_accepted():
    parser = app.build_parser()
    help_text = parser.format_help()
    for flag in (
        "--listen",
        "--defer-tts-load",
        "--autoregressive-model",
        "--output-sample-rate",
        "--smoke-test-seconds",
        "--root",
        "--no-embed-output-metadata",
        "--prune-nonfinal-outputs",
    ):
        assert flag in help_text, flag


def test_smoke_test_serves_the_page_and_exits(tmp_path, caplog):
    port = free_port()
    with caplog.at_level(logging.INFO):
        status = app.main(
            ["--root", str(tmp_path), "--listen", f"127.0.0.1:{port}", "--smoke-test-seconds", "0"]
        )
    assert status == 0
    assert "Smoke test passed" in caplog.text
    assert not (tmp_path / "config" / "exec.json").exists()  # nothing written on start-up
    with socket.socket() as s:  # the port is free again: the server stopped
        s.bind(("127.0.0.1", port))


def test_smoke_test_under_a_sub_path(tmp_path):
    port = free_port()
    assert (
        app.main(
            [
                "--root",
                str(tmp_path),
                "--listen",
                f"127.0.0.1:{port}/tts",
                "--smoke-test-seconds",
                "0",
            ]
        )
        == 0
    )


def test_bad_listen_setting_exits_with_a_message(tmp_path, caplog):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "exec.json").write_text(
        json.dumps({"schema_version": 1, "listen": "host:port"})
    )
    assert app.main(["--root", str(tmp_path), "--smoke-test-seconds", "0"]) == 2
    assert "port must be a number" in caplog.text


# --- who may use a served UI ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),  # every interface: other machines reach it
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("no-such-host.invalid", False),  # cannot tell: the safe side
    ],
)
def test_loopback_rule(host, loopback):
    assert app.is_loopback_host(host) is loopback


def settings(**changes) -> AppSettings:
    import dataclasses

    return dataclasses.replace(AppSettings(), **changes)


def test_access_decision():
    make = lambda: "generated-pw"  # noqa: E731
    assert app.resolve_access(settings(), "127.0.0.1", make_password=make) == app.Access(None, False)
    public = app.resolve_access(settings(), "0.0.0.0", make_password=make)
    assert public == app.Access(("admin", "generated-pw"), True, generated=True)
    shared = app.resolve_access(settings(share=True, share_username=" amy "), "127.0.0.1", make_password=make)
    assert shared.auth == ("amy", "generated-pw") and shared.public
    chosen = app.resolve_access(settings(share_password="pw"), "0.0.0.0", make_password=make)
    assert chosen == app.Access(("admin", "pw"), True)
    local_with_password = app.resolve_access(settings(share_password="pw"), "localhost")
    assert local_with_password.auth == ("admin", "pw")  # a chosen password applies on loopback too
    opted_out = app.resolve_access(settings(public_without_login=True), "0.0.0.0")
    assert opted_out.auth is None and opted_out.open_to_everyone
    assert len({app.resolve_access(settings(), "0.0.0.0").auth[1] for _ in range(3)}) == 3


def test_a_whitespace_password_is_refused():
    with pytest.raises(AppError, match="only spaces"):
        app.resolve_access(settings(share_password="   "), "0.0.0.0")


@pytest.mark.parametrize("typed", ["", "  "])
def test_an_empty_password_flag_exits_with_a_message(tmp_path, caplog, typed):
    argv = ["--root", str(tmp_path), "--share-password", typed, "--smoke-test-seconds", "0"]
    assert app.main(argv) == 2
    assert "--share-password" in caplog.text and "empty or only spaces" in caplog.text


class Browser:
    """An HTTP client with a cookie jar, like a browser visiting the app."""

    def __init__(self, base: str):
        import http.cookiejar
        import urllib.request

        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str]:
        return self._send(path, None)

    def log_in(self, username: str, password: str) -> int:
        import urllib.parse

        form = urllib.parse.urlencode({"username": username, "password": password}).encode()
        return self._send("/login", form)[0]

    def _send(self, path: str, data: bytes | None) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with self.opener.open(urllib.request.Request(self.base + path, data=data), timeout=60) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")


def asks_for_login(page: str) -> bool:
    import re

    return re.search(r'"auth_required"\s*:\s*true', page) is not None


def start_public(tmp_path, *flags):
    """Serve on 0.0.0.0 (all interfaces: public by the app's own rule), reached here via 127.0.0.1."""
    port = free_port()
    running = app.start(["--root", str(tmp_path), "--listen", f"0.0.0.0:{port}", *flags])
    return running, Browser(f"http://127.0.0.1:{port}")


def printed_credentials(out: str) -> tuple[str, str]:
    import re

    username = re.search(r"Username: (\S+)", out)
    password = re.search(r"Password: (\S+)", out)
    assert username and password, out
    return username.group(1), password.group(1)


def test_public_listen_without_password_asks_for_the_printed_login(tmp_path, capsys, caplog):
    with caplog.at_level(logging.DEBUG):
        running, browser = start_public(tmp_path)
    try:
        username, password = printed_credentials(capsys.readouterr().out)
        assert username == "admin" and len(password) >= 16
        status, page = browser.get("/")
        assert status == 200 and asks_for_login(page)
        assert browser.get("/config")[0] == 401  # anonymous: refused
        assert browser.log_in(username, password + "x") == 400
        assert browser.get("/config")[0] == 401
        assert browser.log_in(username, password) == 200
        status, config = browser.get("/config")
        assert status == 200 and "Generate" in config
        assert not asks_for_login(browser.get("/")[1])
        assert password not in caplog.text  # printed for the person at the console, never logged
    finally:
        running.close()


def test_opt_out_serves_publicly_without_login_and_warns_loudly(tmp_path, capsys, caplog):
    with caplog.at_level(logging.WARNING):
        running, browser = start_public(tmp_path, "--public-without-login")
    try:
        assert "WITHOUT A LOGIN" in caplog.text and "0.0.0.0" in caplog.text
        assert "Password:" not in capsys.readouterr().out
        status, page = browser.get("/")
        assert status == 200 and not asks_for_login(page)
        assert browser.get("/config")[0] == 200
    finally:
        running.close()


def test_loopback_stays_without_login_or_warning(tmp_path, capsys, caplog):
    port = free_port()
    with caplog.at_level(logging.WARNING):
        running = app.start(["--root", str(tmp_path), "--listen", f"127.0.0.1:{port}"])
    try:
        assert Browser(f"http://127.0.0.1:{port}").get("/config")[0] == 200
        assert "WITHOUT A LOGIN" not in caplog.text and "Password:" not in capsys.readouterr().out
    finally:
        running.close()


def test_a_chosen_password_is_used_and_not_printed(tmp_path, capsys, caplog):
    secret = "my-own-Secret-42"
    with caplog.at_level(logging.DEBUG):
        running, browser = start_public(tmp_path, "--share-username", "amy", "--share-password", secret)
    try:
        assert secret not in capsys.readouterr().out and secret not in caplog.text
        assert browser.get("/config")[0] == 401
        assert browser.log_in("amy", secret) == 200 and browser.get("/config")[0] == 200
    finally:
        running.close()


def test_public_sub_path_asks_for_a_login_too(tmp_path, capsys):
    port = free_port()
    running = app.start(["--root", str(tmp_path), "--listen", f"0.0.0.0:{port}/tts"])
    try:
        username, password = printed_credentials(capsys.readouterr().out)
        browser = Browser(f"http://127.0.0.1:{port}/tts")
        assert browser.get("/config")[0] == 401 and asks_for_login(browser.get("/")[1])
        assert browser.log_in(username, password) == 200 and browser.get("/config")[0] == 200
    finally:
        running.close()
