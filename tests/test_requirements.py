"""The install is complete and minimal: every import of app.py, src/ and tortoise/ maps to a pinned runtime
requirement or the standard library, every runtime pin is imported or needed by a package that is, optional
packages are imported lazily, and `pip check` is clean in the test venv."""

import ast
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
RUNTIME_FILES = ("requirements.txt", "requirements-nodeps.txt")
LOCAL_PACKAGES = {"app", "src", "tortoise", "list_devices"}
# Optional extras: imported inside a function only, with a message saying how to install them when missing.
OPTIONAL = {
    "voicefixer": "downloads its weights when imported; an opt-in post-pass (pip install voicefixer)",
    "torch_directml": "the DirectML backend, installed only by setup-directml.bat",
    "bitsandbytes": "8-bit AdamW for training on CUDA; installed by the user when wanted",
    "ray": "the optional cluster backend for projects",
}
# torch is pinned per platform by test.sh and the setup scripts (CPU, CUDA, ROCm, DirectML builds differ).
PLATFORM_PINNED = {"torch": REPO / "test.sh"}


def source_files() -> list[Path]:
    files = [REPO / "app.py", REPO / "list_devices.py"]
    for package in ("src", "tortoise"):
        files += sorted((REPO / package).rglob("*.py"))
    return files


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module name, line, imported at module level) for every absolute import in `path`.

    Imports by name count too: a call of a function whose name holds "import" (`importlib.import_module`,
    the app's `_import_backend`) with a literal module name as its first argument.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module_level = {id(node) for node in tree.body}
    for node in tree.body:  # `try: import x` at module level is eager too
        if isinstance(node, ast.Try | ast.If):
            module_level |= {id(child) for child in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and _imports_by_name(node):
            names = [node.args[0].value]
        else:
            continue
        found += [(name.split(".")[0], node.lineno, id(node) in module_level) for name in names]
    return found


def _imports_by_name(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = call.args[0] if call.args else None
    return (
        "import" in name
        and isinstance(first, ast.Constant)
        and isinstance(first.value, str)
        and re.fullmatch(r"[A-Za-z_][\w.]*", first.value) is not None
    )


def pinned(*files: str) -> dict[str, str]:
    """Canonical distribution name -> pinned version, from `name==version` lines (markers allowed)."""
    pins = {}
    for name in files:
        for line in (REPO / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            requirement = Requirement(line)
            specs = list(requirement.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"{name}: '{line}' is not pinned with =="
            pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def third_party_imports() -> dict[str, list[str]]:
    """Import name -> the places that import it, for everything outside the stdlib and our packages."""
    found: dict[str, list[str]] = {}
    for path in source_files():
        for name, line, _ in imports_of(path):
            if name in sys.stdlib_module_names or name in LOCAL_PACKAGES:
                continue
            found.setdefault(name, []).append(f"{path.relative_to(REPO)}:{line}")
    return found


def distributions_of(import_name: str) -> set[str]:
    return {canonicalize_name(d) for d in metadata.packages_distributions().get(import_name, [])}


def dependency_closure(roots: set[str]) -> set[str]:
    """Every installed distribution reachable from `roots` through Requires-Dist (markers evaluated, no
    extras)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            stack.append(canonicalize_name(requirement.name))
    return seen


def test_every_import_is_stdlib_or_a_pinned_runtime_requirement():
    pins = pinned(*RUNTIME_FILES)
    problems = []
    for name, places in sorted(third_party_imports().items()):
        if name in OPTIONAL:
            continue
        if name in PLATFORM_PINNED:
            assert re.search(rf"{name.upper()}_VERSION:-\d", PLATFORM_PINNED[name].read_text()), name
            continue
        dists = distributions_of(name)
        if not dists & pins.keys():
            found = sorted(dists) or "no installed package"
            problems.append(f"'{name}' ({', '.join(places[:3])}) maps to {found}")
    assert not problems, "imports with no pinned runtime requirement:\n" + "\n".join(problems)


def test_optional_packages_are_imported_lazily():
    eager = [
        f"{path.relative_to(REPO)}:{line} imports {name} at module level"
        for path in source_files()
        for name, line, at_module_level in imports_of(path)
        if name in OPTIONAL and at_module_level
    ]
    assert not eager, "\n".join(eager)


def test_every_runtime_pin_is_imported_or_needed_by_an_import():
    pins = pinned(*RUNTIME_FILES)
    imported = set()
    for name in third_party_imports():
        imported |= distributions_of(name)
    needed = dependency_closure(imported & pins.keys())
    unused = sorted(set(pins) - needed)
    assert not unused, f"pinned but neither imported nor needed by an import: {unused}"


def test_installed_versions_match_the_pins():
    pins = pinned(*RUNTIME_FILES)
    wrong = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"pinned vs installed: {wrong}"


def test_pip_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("line", ["numpy==2.4.6", 'triton==3.5.1; sys_platform == "linux"'])
def test_pin_parser_accepts_pins_with_markers(tmp_path, line, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "r.txt").write_text(f"# comment\n{line}  # why\n")
    assert len(pinned("r.txt")) == 1


@pytest.mark.parametrize("line", ["numpy", "numpy>=2", "numpy==2.4.6,<3"])
def test_pin_parser_refuses_loose_requirements(tmp_path, line, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "r.txt").write_text(line + "\n")
    with pytest.raises(AssertionError, match="not pinned"):
        pinned("r.txt")
