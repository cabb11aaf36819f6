"""The public API of each package is what its modules say it is (``__all__``).

For every public module of :mod:`probes` and :mod:`analysis` (private modules start with
``_``): ``__all__`` exists, names only things the module has, and lists every public
function and class the module defines itself. The layering rule of DESIGN.md is checked
too: :mod:`probes` never imports :mod:`analysis`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def public_modules() -> list[str]:
    names = []
    for pkg in ("probes", "analysis"):
        names.append(pkg)
        mod = importlib.import_module(pkg)
        for info in pkgutil.iter_modules(mod.__path__):
            if not info.name.startswith("_") and not info.ispkg:
                names.append(f"{pkg}.{info.name}")
    return names


@pytest.mark.parametrize("name", public_modules())
def test_all_is_complete_and_exact(name):
    mod = importlib.import_module(name)
    assert hasattr(mod, "__all__"), f"{name} has no __all__"
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    defined_here = [
        n for n, obj in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == name
    ]
    unlisted = sorted(set(defined_here) - set(mod.__all__))
    assert not unlisted, f"{name} defines public {unlisted} but leaves them out of __all__"


def test_probes_never_imports_analysis():
    offenders = []
    for f in sorted((ROOT / "probes").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            if any(m == "analysis" or m.startswith("analysis.") for m in mods):
                offenders.append(f.name)
    assert not offenders, offenders
