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
