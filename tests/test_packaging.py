"""The package per audience (pyproject.toml): an integrator's `pip install vperp` brings the SDK, the reference
model and the deploy/keeper tooling without the simulator's plotting, the fast tier's in-process EVM or the test
and analysis tools, which are the extras `sim`, `fast` and `dev`.

Checked statically, so it runs in a second: every module an SDK module imports (transitively, inside vperp) imports
no extra-only distribution at module level. A lazy import inside a function is the way a module reaches an extra.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vperp"
SDK = ["client", "keeper", "model", "deployment", "config", "config_file", "governance", "funding", "units",
       "chain_io", "dashboard"]
EXTRA_ONLY = {"matplotlib", "pyrevm", "hypothesis", "pytest", "slither", "xdist"}


def _module_path(name: str) -> Path:
    p = PKG.joinpath(*name.split("."))
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def _top_level_imports(name: str) -> tuple[set[str], set[str]]:
    """(distributions, vperp submodules) imported at module level by vperp.<name>."""
    path = _module_path(name)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    dists, inner = set(), set()
    for node in ast.parse(path.read_text()).body:  # module level only: imports inside functions are lazy on purpose
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("vperp."):
                    inner.add(a.name.removeprefix("vperp."))
                else:
                    dists.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module.startswith("vperp"):
                parts = (package[: len(package) - node.level + 1] if node.level else [])
                module = node.module.removeprefix("vperp").lstrip(".") if not node.level else node.module
                target = ".".join(parts + ([module] if module else []))
                inner.update(f"{target}.{a.name}".lstrip(".") for a in node.names)  # `from . import x`
                if target:
                    inner.add(target)
            else:
                dists.add(node.module.split(".")[0])
    return dists, {m for m in inner if _module_path(m).exists()}


def test_the_sdk_imports_no_extra_at_module_level():
    seen, todo, found = set(), list(SDK), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        dists, inner = _top_level_imports(name)
        for d in dists & EXTRA_ONLY:
            found.setdefault(d, []).append(f"vperp.{name}")
        todo.extend(inner - seen)
    assert "model" in seen and "client" in seen
    assert not found, found


# Refuses every extra-only distribution (and its submodules) the way an install without the extras would.
_WITHOUT_EXTRAS = textwrap.dedent("""
    import importlib, importlib.abc, sys
    BLOCKED = {blocked!r}
    refused = []

    class NoExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                refused.append(name)
                raise ModuleNotFoundError(f"No module named {{name!r}} (an extra: not installed)", name=name)
            return None

    assert not BLOCKED & {{m.split(".")[0] for m in sys.modules}}, "an extra was imported before the test began"
    sys.meta_path.insert(0, NoExtras())
    for module in {modules!r}:
        importlib.import_module(module)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("imported", len({modules!r}), "modules; refused:", sorted(set(refused)))
""")


def test_the_sdk_imports_without_the_extras():
    """The package and the SDK's modules (SDK) import in a fresh interpreter where no extra-only distribution
    (EXTRA_ONLY) can be found: the static check above, run for real (a module that reaches an extra at import time,
    directly or through a dependency, fails with its ModuleNotFoundError). A guarded optional import
    (try/except ImportError) passes, as it would without the extras; the names refused are printed."""
    code = _WITHOUT_EXTRAS.format(blocked=EXTRA_ONLY, modules=["vperp", *(f"vperp.{m}" for m in SDK)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    print(r.stdout.strip())


def test_the_base_dependencies_hold_no_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split("=")[0].split(">")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert not {"matplotlib", "pyrevm", "hypothesis", "pytest", "pytest-xdist", "slither-analyzer"} & base
    extras = project["optional-dependencies"]
    assert {"sim", "fast", "dev"} <= set(extras)
    assert any(d.startswith("vperp[") and "sim" in d and "fast" in d for d in extras["dev"])


def test_developer_tooling_is_outside_the_installed_package():
    """The gas table, coverage, the Slither gate and mutation testing live in devtools/, which the package list
    (`[tool.setuptools.packages.find]`) leaves out, and nothing in vperp/ imports them."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["vperp*"]
    assert (ROOT / "devtools" / "__init__.py").exists()
    for name in ("gas", "srccoverage", "fncoverage", "slither_check", "mutation"):
        assert not _module_path(name).exists(), name
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "devtools":
                raise AssertionError(f"{path.relative_to(ROOT)} imports {node.module}")
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "devtools" for a in node.names):
                raise AssertionError(f"{path.relative_to(ROOT)} imports devtools")
