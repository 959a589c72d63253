"""update.sh: refuses on local changes to tracked files, else pulls and reinstalls requirements
around the installed torch build. Runs in a temporary clone of a temporary local "origin"."""

import os
import sys

import pytest

from tests.scripts.fakes import FakePython, make_checkout, run

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the .sh scripts are tested on Linux"),
]

FILES = ("update.sh", "scripts/setup-common.sh", "scripts/torch_build.py", "requirements.txt",
         "requirements-nodeps.txt")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd, *args, env):
    result = run(["git", *args], cwd, env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def repos(tmp_path):
    """A local origin with one commit more than the clone; returns (origin, clone, fake, env)."""
    fake = FakePython(tmp_path / "fake")
    env = {**fake.env, **GIT_ENV}
    origin = make_checkout(tmp_path / "origin", *FILES)
    (origin / "notes.txt").write_text("first\n")
    git(origin, "init", "-q", "-b", "main", env=env)
    git(origin, "add", ".", env=env)
    git(origin, "commit", "-q", "-m", "first", env=env)
    git(tmp_path, "clone", "-q", str(origin), "clone", env=env)
    (origin / "notes.txt").write_text("second\n")
    git(origin, "commit", "-q", "-am", "second", env=env)
    return origin, tmp_path / "clone", fake, env


def update(clone, env):
    return run(["bash", "./update.sh"], clone, env)


def test_refuses_when_a_tracked_file_is_modified(repos):
    _, clone, fake, env = repos
    before = git(clone, "rev-parse", "HEAD", env=env)
    (clone / "notes.txt").write_text("my local edit\n")
    result = update(clone, env)
    assert result.returncode == 1
    assert "local changes" in result.stderr and "notes.txt" in result.stderr
    assert "git stash" in result.stderr
    assert git(clone, "rev-parse", "HEAD", env=env) == before  # nothing was pulled
    assert (clone / "notes.txt").read_text() == "my local edit\n"
    assert fake.pip_installs() == []


def test_untracked_files_do_not_block_and_no_venv_is_fine(repos):
    _, clone, fake, env = repos
    (clone / "voices").mkdir()
    (clone / "voices" / "mine.wav").write_bytes(b"RIFF")
    result = update(clone, env)
    assert result.returncode == 0, result.stderr
    assert (clone / "notes.txt").read_text() == "second\n"
    assert "no venv/ yet" in result.stdout
    assert fake.pip_installs() == []


def test_pulls_then_reinstalls_requirements_keeping_torch(repos):
    _, clone, fake, env = repos
    # a venv as setup-cuda.sh leaves it, made with the fake interpreter and pip
    assert run([str(fake.base), "-m", "venv", "venv"], clone, env).returncode == 0
    assert (
        run(
            ["venv/bin/python", "-m", "pip", "install", "torch==2.13.0+cu130"], clone, env
        ).returncode
        == 0
    )
    (clone / "venv" / "setup-backend.txt").write_text("cuda\n")
    fake.clear_log()
    result = update(clone, env)
    assert result.returncode == 0, result.stderr
    assert (clone / "notes.txt").read_text() == "second\n"
    assert fake.pip_installs() == [
        ["-r", "requirements.txt", "-c", "venv/torch-constraint.txt"],
        ["--no-deps", "-r", "requirements-nodeps.txt", "-c", "venv/torch-constraint.txt"],
    ]
    assert "torch==2.13.0+cu130" in (clone / "venv/torch-constraint.txt").read_text()
    assert "NOTE" not in result.stdout


def test_notes_when_the_project_pins_a_newer_torch(repos):
    _, clone, fake, env = repos
    run([str(fake.base), "-m", "venv", "venv"], clone, env)
    run(["venv/bin/python", "-m", "pip", "install", "torch==2.12.0+cu130"], clone, env)
    (clone / "venv" / "setup-backend.txt").write_text("cuda\n")
    result = update(clone, env)
    assert result.returncode == 0, result.stderr
    assert "pins torch 2.13.0" in result.stdout and "./setup-cuda.sh" in result.stdout


def test_not_a_git_checkout(tmp_path):
    fake = FakePython(tmp_path / "fake")
    plain = make_checkout(tmp_path / "plain", *FILES)
    env = {**fake.env, **GIT_ENV, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    result = update(plain, env)
    assert result.returncode == 1 and "not a git checkout" in result.stderr
