"""The packages depend one way: the dashboard and the server on ``shared``, never on each
other, and ``shared`` on neither. Read from the source, so an import hidden in a function
body (that a test run might never execute) is caught too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "ventryx_shared": ROOT / "shared" / "ventryx_shared",
    "ventryx_server": ROOT / "server" / "ventryx_server",
    "ventryx_tui": ROOT / "tui" / "ventryx_tui",
}
FORBIDDEN = {
    "ventryx_shared": {"ventryx_server", "ventryx_tui"},
    "ventryx_server": {"ventryx_tui"},
    "ventryx_tui": {"ventryx_server"},
}


def imported_packages(source: str) -> set[str]:
    """The top-level names every import statement of ``source`` reaches."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def violations(package: str, files: dict[str, str]) -> list[str]:
    return [
        f"{name} imports {sorted(imported_packages(source) & FORBIDDEN[package])}"
        for name, source in files.items()
        if imported_packages(source) & FORBIDDEN[package]
    ]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_only_what_it_may(package):
    sources = {
        str(path.relative_to(ROOT)): path.read_text() for path in PACKAGES[package].rglob("*.py")
    }
    assert sources, f"no sources found for {package}"
    assert violations(package, sources) == []


def test_the_check_catches_an_import_hidden_in_a_function():
    hidden = "def later():\n    from ventryx_server.auth import Caller\n    return Caller\n"
    assert violations("ventryx_tui", {"screen.py": hidden}) == [
        "screen.py imports ['ventryx_server']"
    ]
    assert violations("ventryx_shared", {"x.py": "import ventryx_tui.app\n"}) == [
        "x.py imports ['ventryx_tui']"
    ]
