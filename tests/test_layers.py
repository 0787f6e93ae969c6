"""The layers of ARCHITECTURE.md: models imports none of ours; the four parts never import each other;
nothing imports gridpatrol. Walks every module's imports (static, so lazy imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"models", "ingest", "detectors", "rtsp_gateway", "api", "gridpatrol"}
ALLOWED = {
    "models": set(),
    "ingest": {"models"},
    "detectors": {"models"},
    "rtsp_gateway": {"models"},
    "api": {"models"},
    "gridpatrol": OURS - {"gridpatrol"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


def modules() -> list[tuple[str, Path]]:
    return [(pkg, p) for pkg in sorted(OURS) for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), modules(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_module_imports_only_lower_layers(package: str, path: Path) -> None:
    bad = imported_packages(path) - ALLOWED[package] - {package}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: not allowed for {package}/"


def test_the_walk_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from detectors.rules import x\n    import api.app\n")
    assert imported_packages(bad) == {"detectors", "api"}


#: the kernel's layout (ARCHITECTURE.md, module map): three shared modules, then one sub-package per concern
KERNEL_MODULES = {"__init__.py", "errors.py", "settings.py", "secrets.py"}
KERNEL_PACKAGES = {"db", "grid", "identity", "tickets", "bus", "evidence", "live", "org", "patrol", "notify"}


def test_models_is_a_few_modules_and_one_subpackage_per_concern() -> None:
    top = {p.name for p in (ROOT / "models").iterdir() if p.name != "__pycache__"}
    modules = {n for n in top if n.endswith(".py")}
    packages = top - modules
    assert modules == KERNEL_MODULES, f"models/ holds modules outside the module map: {sorted(modules - KERNEL_MODULES)}"
    assert packages <= KERNEL_PACKAGES, f"models/ holds packages outside the module map: {sorted(packages - KERNEL_PACKAGES)}"
    for pkg in packages:
        assert (ROOT / "models" / pkg / "__init__.py").exists(), f"models/{pkg} is not a package"
    assert (ROOT / "models" / "db" / "migrations" / "versions").is_dir()
