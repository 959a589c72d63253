"""Layering (STYLE §1): the core imports neither gradio nor the app, and importing it does no work."""

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_tortoise_pulls_in_no_gradio_no_src_no_transformers():
    code = (
        "import sys, tortoise, tortoise.cli, tortoise.redaction, tortoise.download;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('gradio', 'src', 'transformers')];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""


def test_core_sources_never_mention_the_app_layers():
    for path in (REPO / "tortoise").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import gradio" not in text and "from src" not in text and "import src" not in text, path


def _tortoise_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of the tortoise package in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        module = getattr(node, "module", None) or ""
        if isinstance(node, ast.ImportFrom) and node.level == 0 and module.startswith("tortoise"):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("tortoise")]
    return found


def test_the_app_uses_only_the_public_api_of_the_core():
    """src/ and app.py import `from tortoise import ...`, and only names tortoise/__init__.py exports."""
    import tortoise

    problems = []
    for path in [REPO / "app.py", *sorted((REPO / "src").rglob("*.py"))]:
        for line, module, names in _tortoise_imports(path):
            where = f"{path.relative_to(REPO)}:{line}"
            if module != "tortoise" or not names:
                problems.append(f"{where} imports {module}; use `from tortoise import ...`")
            problems += [f"{where} imports {n}, which tortoise does not export" for n in names
                         if n not in tortoise.__all__]
    assert not problems, "\n".join(problems)


def test_the_import_rule_finds_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tortoise.models.gpt2 import KVCache\n", encoding="utf-8")
    assert _tortoise_imports(bad) == [(2, "tortoise.models.gpt2", ["KVCache"])]


def test_device_branching_lives_in_the_core_device_layer():
    """The app asks tortoise.device about devices; it never branches on CUDA or MPS itself."""
    pattern = re.compile(r"torch\.(cuda|backends\.mps|mps)\b|torch_directml")
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in [REPO / "app.py", *sorted((REPO / "src").rglob("*.py"))]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "\n".join(offenders)
