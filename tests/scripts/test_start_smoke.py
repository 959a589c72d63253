"""./start.sh on a fresh clone of the committed HEAD: it serves the page, which answers HTTP 200 while
the app is up, and stops by itself with exit code 0 (app.py --smoke-test-seconds).

The clone reuses this test's virtual environment through VENV_DIR instead of building its own, so the
test takes seconds, not a torch download. What it checks is the committed tree: files that are not
committed yet are not in the clone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.scripts.fakes import REPO_ROOT

SMOKE_SECONDS = 5
START_TIMEOUT_S = 300  # import gradio, build the UI, serve: ~15 s on two busy cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int | None:
    """The status of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.slow
def test_fresh_clone_starts_serves_the_page_and_stops_cleanly(tmp_path):
    committed = subprocess.run(
        ["git", "cat-file", "-e", "HEAD:app.py"], cwd=REPO_ROOT, capture_output=True, check=False
    )
    assert committed.returncode == 0, "app.py must be committed: the test starts a fresh clone"
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True, capture_output=True
    )
    assert not (clone / "venv").exists()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {k: v for k, v in os.environ.items() if k != "SETUP_BACKEND"}
    env.update(VENV_DIR=sys.prefix, GRADIO_ANALYTICS_ENABLED="False")
    log_path = tmp_path / "start.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["./start.sh", "--listen", f"127.0.0.1:{port}", "--smoke-test-seconds", str(SMOKE_SECONDS)],
            cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        status, deadline = None, time.monotonic() + START_TIMEOUT_S
        while status != 200 and proc.poll() is None and time.monotonic() < deadline:
            status = http_status(url)
            time.sleep(0.2)
        returncode = proc.wait(timeout=SMOKE_SECONDS + 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log_path.read_text()
    assert status == 200, f"the page never answered 200 at {url}:\n{output}"
    assert returncode == 0, output
    assert "Smoke test passed" in output, output
    assert http_status(url) is None, "the server is still up after start.sh exited"
    assert not (clone / "venv").exists(), "start.sh ignored VENV_DIR and set up a venv of its own"
