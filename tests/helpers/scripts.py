"""The `ape run` scripts (scripts/*.py) as modules, for the tests of their command lines and helpers."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    """scripts/`name`.py, executed once per call as module `vperp_scripts_<name>` (registered in sys.modules, which
    dataclasses and pickling need)."""
    spec = importlib.util.spec_from_file_location(f"vperp_scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
