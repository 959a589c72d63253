"""Code shape (STYLE §9): no function in the app or the core runs past 100 lines."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 100


def long_functions(paths, limit: int = MAX_FUNCTION_LINES, root: Path = REPO) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_src_or_tortoise_is_over_100_lines():
    paths = [REPO / "app.py", *sorted((REPO / "src").rglob("*.py"))]
    paths += sorted((REPO / "tortoise").rglob("*.py"))
    assert long_functions(paths) == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "probe.py"
    path.write_text(f"def long():\n{body}\n", encoding="utf-8")
    assert long_functions([path], root=tmp_path) == [f"probe.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]
    path.write_text("def short():\n    return 1\n", encoding="utf-8")
    assert long_functions([path], root=tmp_path) == []
