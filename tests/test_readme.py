"""The README stays true: it names the test command, every settings flag and every platform script."""

from pathlib import Path

from src.settings import CLI_ALIASES, AppSettings, field_specs

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_settings_flag():
    for spec in field_specs(AppSettings):
        for flag in (spec.cli, *CLI_ALIASES.get(spec.name, ())):
            assert f"`{flag}`" in README, flag


def test_readme_names_the_two_commands_and_every_platform_script():
    for name in ("./start.sh", "./test.sh", "setup-cuda.sh", "setup-rocm.sh", "setup-cuda.bat",
                 "setup-directml.bat", "start.bat", "update.sh", "notebook.ipynb", "convert/", "bin/"):
        assert name in README, name
