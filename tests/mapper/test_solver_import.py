"""Only mapper/solver.py imports the solver package (PuLP): the model is plain Python."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dataflow", "hw", "mapper", "sim", "explore")


def _imports_pulp(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pulp" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pulp":
            return True
    return False


def test_only_solver_imports_pulp():
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    assert any(p.name == "ilp.py" for p in files)
    importers = sorted(str(p.relative_to(ROOT)) for p in files if _imports_pulp(p))
    assert importers == ["mapper/solver.py"]


def test_mapper_modules_import_without_loading_pulp():
    """Importing the model-building side does not load PuLP (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys; import mapper, mapper.ilp, mapper.space, mapper.cost, mapper.brute, mapper.api; "
            "print('pulp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
