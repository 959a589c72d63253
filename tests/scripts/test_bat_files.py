"""The Windows .bat scripts, checked by reading them (no cmd.exe here): the expected steps, in
order, plus structural checks that catch the usual batch mistakes."""

import re

import pytest

from tests.scripts.fakes import REPO_ROOT

BAT_FILES = sorted(
    p.relative_to(REPO_ROOT).as_posix()
    for pattern in ("*.bat", "scripts/*.bat", "convert/*.bat")
    for p in REPO_ROOT.glob(pattern)
)


def read(rel: str) -> str:
    return (REPO_ROOT / rel).read_bytes().decode("ascii")


def code_lines(rel: str) -> list[str]:
    """Lines without comments, stripped."""
    lines = [line.strip() for line in read(rel).split("\r\n")]
    return [line for line in lines if line and not re.match(r"(?i)^(rem\b|::)", line)]


def position(lines: list[str], pattern: str) -> int:
    """Index of the first line matching ``pattern``; fails the test when there is none."""
    for index, line in enumerate(lines):
        if re.search(pattern, line):
            return index
    pytest.fail(f"no line matches {pattern!r}")


def test_expected_bat_files_exist():
    for name in (
        "setup-cuda.bat",
        "setup-directml.bat",
        "setup-cpu.bat",
        "start.bat",
        "update.bat",
        "scripts/setup-common.bat",
        "convert/to_voice_wav.bat",
    ):
        assert name in BAT_FILES


@pytest.mark.parametrize("rel", BAT_FILES)
def test_structure(rel):
    raw = (REPO_ROOT / rel).read_bytes()
    # cmd mis-reads labels and goto targets in LF-only files; .gitattributes keeps CRLF
    assert raw.count(b"\n") == raw.count(b"\r\n") and raw.endswith(b"\r\n"), "needs CRLF endings"
    lines = code_lines(rel)
    assert lines[0].lower() == "@echo off"
    labels = {line[1:].split()[0].lower() for line in lines if re.match(r"^:\w", line)}
    for line in lines:
        for target in re.findall(r"(?i)\b(?:goto|call)\s+:(\w+)", line):
            assert target.lower() in labels or target.lower() == "eof", f"{rel}: no label :{target}"
    # parentheses outside quotes and carets must balance, or a block swallows the rest
    depth = 0
    for line in lines:
        bare = re.sub(r'"[^"]*"', "", line).replace("^(", "").replace("^)", "")
        if bare.lower().startswith("echo") and depth == 0:
            continue
        depth += bare.count("(") - bare.count(")")
        assert depth >= 0, f"{rel}: unbalanced ')' at: {line}"
    assert depth == 0, f"{rel}: a '(' block is never closed"


@pytest.mark.parametrize(
    ("rel", "mode"),
    [("setup-cuda.bat", "cuda"), ("setup-directml.bat", "directml"), ("setup-cpu.bat", "cpu")],
)
def test_setup_scripts_call_the_shared_steps(rel, mode):
    lines = code_lines(rel)
    assert rf"call scripts\setup-common.bat {mode}" in lines
    assert position(lines, r"^cd /d \"%~dp0\"$") < position(lines, "setup-common.bat")


def test_shared_setup_steps_in_order():
    lines = code_lines("scripts/setup-common.bat")
    venv = position(lines, r"-m venv venv$")
    reuse = position(lines, r'^if exist "%VENV_PY%"')
    torch = position(lines, r'-m pip install "%TORCH_SPEC%" %TORCH_PIP_ARGS%$')
    requirements = position(lines, r"-m pip install -r requirements\.txt -c \"%CONSTRAINT_FILE%\"$")
    verify = position(lines, r"torch_build\.py verify --backend %MODE%$")
    assert reuse < venv, "an existing venv must be reused, not recreated"
    assert (
        position(lines, r"^:install_torch$") < torch < position(lines, r"^:install_requirements$")
    )
    assert position(lines, r"torch_build\.py write-constraint") < requirements
    calls = [
        position(lines, rf"^call :{step}$")
        for step in ("ensure_venv", "install_torch", "install_requirements")
    ]
    assert calls == sorted(calls) and calls[-1] < verify
    text = "\n".join(lines)
    assert 'set "TORCH_SPEC=torch==%TORCH_VERSION%+%TORCH_CUDA%"' in text
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/%TORCH_CUDA%" in text
    assert 'set "TORCH_SPEC=torch-directml==%TORCH_DIRECTML_VERSION%"' in text
    assert 'set "TORCH_SPEC=torch==%TORCH_VERSION%"' in text
    assert 'torch_build.py is-installed "%TORCH_SPEC%"' in text


def _default(text: str, name: str) -> str:
    match = re.search(rf"{name}(?:=|:=)([\w.+-]+)", text)
    assert match, name
    return match.group(1)


def test_defaults_agree_with_the_shell_scripts_and_test_sh():
    bat = read("scripts/setup-common.bat")
    sh = (REPO_ROOT / "scripts/setup-common.sh").read_text()
    test_sh = (REPO_ROOT / "test.sh").read_text()
    assert _default(bat, "TORCH_VERSION") == _default(sh, "TORCH_VERSION")
    assert re.search(r'TORCH_VERSION="\$\{TORCH_VERSION:-([\d.]+)\}"', test_sh).group(
        1
    ) == _default(sh, "TORCH_VERSION")
    assert _default(bat, "TORCH_CUDA") == _default(sh, "TORCH_CUDA")


def test_start_runs_app_py_with_the_venv_python():
    lines = code_lines("start.bat")
    run = position(lines, r'^"venv\\Scripts\\python\.exe" app\.py %\*$')
    assert position(lines, r'^set "PATH=%~dp0bin;%PATH%"$') < run
    assert position(lines, r"^call scripts\\setup-common\.bat cuda$") < run


def test_update_refuses_local_changes_before_pulling():
    lines = code_lines("update.bat")
    dirty = position(lines, r"git status --porcelain --untracked-files\^=no")
    refuse = position(lines, r"^if defined DIRTY \($")
    pull = position(lines, r"^git pull --ff-only$")
    requirements = position(lines, r"^call scripts\\setup-common\.bat requirements$")
    assert dirty < refuse < pull < requirements
    # the pull and what follows sit in one block that ends by leaving the script
    block_start = max(i for i, line in enumerate(lines[:pull]) if line == "(")
    depth, block_end = 0, None
    for index in range(block_start, len(lines)):
        depth += lines[index].endswith("(") - (lines[index] == ")" or lines[index].startswith(") "))
        if depth == 0:
            block_end = index
            break
    assert block_end is not None and block_start < requirements < block_end
    assert lines[block_end - 1].startswith("exit /b")


def test_converter_looks_in_bin_first_and_makes_voice_wavs():
    lines = code_lines("convert/to_voice_wav.bat")
    text = "\n".join(lines)
    assert position(lines, r'bin\\ffmpeg\.exe"') < position(lines, r"where ffmpeg")
    assert 'set "SAMPLE_RATE=22050"' in text
    assert re.search(r"-ac 1 -ar %SAMPLE_RATE% -c:a pcm_s16le", text)
    assert "move /y" in text  # written to a temp file, then moved into place
    no_ffmpeg = "\n".join(lines[position(lines, r"^:no_ffmpeg$") :])
    assert "install ffmpeg system-wide" in no_ffmpeg and "bin\\" in no_ffmpeg
