"""Every shell script in the repository passes shellcheck with no findings, style included."""

import os
import shutil
import subprocess

from tests.scripts.fakes import REPO_ROOT

# data folders and environments may hold other people's scripts; they are not ours to lint
SKIP_DIRS = {"venv", "models", "voices", "results", "training", "config", "bin", "node_modules"}


def shell_scripts() -> list[str]:
    found = []
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIP_DIRS
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        ]
        found += [
            os.path.relpath(os.path.join(folder, f), REPO_ROOT) for f in files if f.endswith(".sh")
        ]
    return sorted(found)


def test_the_platform_scripts_are_found():
    scripts = shell_scripts()
    for name in (
        "setup-cpu.sh",
        "setup-cuda.sh",
        "setup-rocm.sh",
        "start.sh",
        "update.sh",
        "test.sh",
    ):
        assert name in scripts
    assert os.path.join("scripts", "setup-common.sh") in scripts
    assert os.path.join("convert", "to_voice_wav.sh") in scripts


def test_shellcheck_finds_nothing():
    assert shutil.which("shellcheck"), "shellcheck is missing: ./test.sh installs it (Debian package)"
    # -x follows `source` lines; paths in `# shellcheck source=` are relative to the repo root
    result = subprocess.run(
        ["shellcheck", "-x", "--format=gcc", *shell_scripts()],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"shellcheck findings:\n{result.stdout}{result.stderr}"


def test_scripts_are_executable_bash_with_strict_mode():
    for rel in shell_scripts():
        path = REPO_ROOT / rel
        text = path.read_text()
        if rel == os.path.join("scripts", "setup-common.sh"):  # sourced, never executed
            assert text.startswith("# shellcheck shell=bash")
            continue
        assert text.startswith("#!/usr/bin/env bash\n"), rel
        assert "set -euo pipefail" in text, rel
        assert os.access(path, os.X_OK), f"{rel} is not executable (chmod +x)"
