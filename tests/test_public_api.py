"""The public API of each package is what its modules say it is (``__all__``).

For every public module of :mod:`probes` and :mod:`analysis` and of their subpackages
(private modules start with ``_``): ``__all__`` exists, names only things the module has,
and lists every public function and class the module defines itself. The layering rules
are checked too: :mod:`probes` never imports :mod:`analysis` (DESIGN.md), and a private
module is imported only from inside its own package, so what one package (or subpackage)
uses of another is that one's public API.
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
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{pkg}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


def _module_name(f: Path, root: Path) -> str:
    parts = list(f.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(f: Path, me: str) -> list[str]:
    """Every module an import statement of ``f`` names (``from a import _b`` gives a._b too)."""
    package = me if f.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def private_import_offenders(root: Path = ROOT) -> list[str]:
    offenders = []
    for pkg in ("probes", "analysis"):
        for f in sorted((root / pkg).rglob("*.py")):
            me = _module_name(f, root)
            for target in _imported_modules(f, me):
                parts = target.split(".")
                if parts[0] not in ("probes", "analysis"):
                    continue
                for i, part in enumerate(parts):
                    if part.startswith("_") and not part.startswith("__"):
                        owner = ".".join(parts[:i])
                        if not (me == owner or me.startswith(owner + ".")):
                            offenders.append(f"{me} imports {target}")
                        break
    return offenders


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


def test_private_modules_are_imported_only_inside_their_own_package():
    offenders = private_import_offenders()
    assert not offenders, offenders


def test_the_private_import_rule_catches_cross_package_imports(tmp_path):
    """The checker itself, on a small tree: what it must flag and what it must allow."""
    files = {
        "probes/__init__.py": "",
        "probes/_helper.py": "",
        "probes/sub/__init__.py": "from . import _inner\nfrom probes import _helper\n",
        "probes/sub/_inner.py": "from ._sibling import x\n",
        "probes/other.py": "from probes.sub import _inner\n",
        "analysis/__init__.py": "",
        "analysis/stage.py": "from probes import _helper\nimport probes.sub._inner\n"
                             "from analysis import _own\nfrom probes.sub import public\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert private_import_offenders(tmp_path) == [
        "probes.other imports probes.sub._inner",
        "analysis.stage imports probes._helper",
        "analysis.stage imports probes.sub._inner",
    ]
