"""Check for Updates: counts upstream commits after a fetch; says so quietly outside a checkout,
without an upstream, or offline."""

import shutil
import subprocess

import pytest

from src.updates import (
    BEHIND,
    NOT_CHECKED,
    UNKNOWN,
    UP_TO_DATE,
    UpdateChecker,
    UpdateStatus,
    check_for_updates,
)


def git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=master", *args],
        cwd=cwd, check=True, capture_output=True,
    )  # fmt: skip


def commit(cwd, name):
    (cwd / name).write_text(name)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", f"add {name}")


@pytest.fixture
def upstream_and_clone(tmp_path):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(upstream, "init", "-q")
    commit(upstream, "a.txt")
    git(tmp_path, "clone", "-q", str(upstream), "install")
    return upstream, tmp_path / "install"


def test_up_to_date_then_behind(upstream_and_clone):
    upstream, install = upstream_and_clone
    status = check_for_updates(install)
    assert status == UpdateStatus(UP_TO_DATE, "Up to date with origin/master.", 0, "origin/master")
    commit(upstream, "b.txt")
    commit(upstream, "c.txt")
    status = check_for_updates(install)
    assert status.state == BEHIND and status.behind == 2
    assert "2 new commit(s) on origin/master" in status.message and "update.sh" in status.message
    assert not (install / "b.txt").exists()  # a fetch only: the installation is not changed


def test_offline_is_harmless(upstream_and_clone):
    _, install = upstream_and_clone
    git(install, "remote", "set-url", "origin", "http://127.0.0.1:9/none.git")
    status = check_for_updates(install, fetch_timeout_s=10)
    assert status.state == UNKNOWN and "Could not reach origin" in status.message


def test_no_upstream_branch(upstream_and_clone):
    _, install = upstream_and_clone
    git(install, "checkout", "-q", "-b", "local-only")
    assert check_for_updates(install).state == UNKNOWN


def test_outside_a_checkout_or_inside_another_repository(tmp_path, upstream_and_clone):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert check_for_updates(plain).state == NOT_CHECKED
    _, install = upstream_and_clone
    inner = install / "sub"
    inner.mkdir()
    assert check_for_updates(inner).state == NOT_CHECKED


def test_missing_git_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    status = check_for_updates(tmp_path)
    assert status.state == NOT_CHECKED and "git is not installed" in status.message


def test_checker_reuses_a_recent_result_and_logs_it(tmp_path, caplog):
    calls = []

    def fake(root):
        calls.append(root)
        return UpdateStatus(BEHIND, "An update is available: 1 new commit(s).", 1, "origin/master")

    checker = UpdateChecker(tmp_path, check=fake)
    with caplog.at_level("INFO", logger="src.updates"):
        first = checker.check()
        assert checker.check() is first and len(calls) == 1
        checker.check(force=True)
    assert len(calls) == 2
    assert "Check for updates: An update is available" in caplog.text
