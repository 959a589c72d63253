"""Layering (STYLE §1): the core imports neither gradio nor the app, and importing it does no work."""

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
