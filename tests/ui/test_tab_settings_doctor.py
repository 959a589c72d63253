"""The Settings tab's Installation Check section (src/ui/tab_settings_doctor.py)."""

import gradio as gr

from src.ui import tab_settings, tab_settings_doctor
from tests.app_doubles import FakeTTS, make_context


def test_the_section_is_the_last_part_of_settings_and_reports(tmp_path):
    ctx = make_context(tmp_path, FakeTTS())
    (ctx.paths.tortoise_models_dir).mkdir(parents=True, exist_ok=True)
    (ctx.paths.tortoise_models_dir / "autoregressive.pth").write_bytes(b"")
    with gr.Blocks():
        c = tab_settings.build(ctx)
    assert list(c)[-2:] == ["doctor", "doctor_check"]
    report = tab_settings_doctor.doctor_markdown(ctx)
    assert report.startswith("**") and "| ❌ | Model autoregressive.pth | corrupt:" in report
    assert "| Disk space |" in report and "ffmpeg" in report
