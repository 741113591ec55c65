"""Tests for ``einsynth show``: every built-in cascade, pass counts, ``--set`` and its errors.

Most run ``explore.cli.main`` in-process (a real ``einsynth`` process costs ~0.5 s); two run the
installed console script end to end.
"""
import contextlib
import io
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from dataflow import load_cascade
from dataflow.analysis import op_counts
from dataflow.parser import library_names
from explore.cli import main

REPO = Path(__file__).parents[2]


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def shapes_line(text: str) -> dict[str, int]:
    line = next(l for l in text.splitlines() if l.startswith("shapes: "))
    return {k: int(v) for k, v in (item.split("=") for item in line[len("shapes: "):].split(", "))}


def op_table(text: str) -> dict[tuple[str, str], int]:
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(r"op\s+format\s+count\s*$", l))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        op, fmt, count = line.split()
        rows[(op, fmt)] = int(count.replace(",", ""))
    return rows


def passes(text: str) -> int:
    return int(re.search(r"^passes: (\d+) \(", text, flags=re.M).group(1))


@pytest.mark.parametrize("name", library_names())
def test_show_every_library_cascade(name):
    rc, out, err = run("show", name)
    assert rc == 0 and err == ""
    c = load_cascade(name)
    assert out.startswith(f"cascade {name}")
    assert shapes_line(out) == dict(c.shapes)
    for t in c.tensors.values():
        assert re.search(rf"^{t.name}\s+\[{', '.join(t.ranks)}\]\s", out, flags=re.M), t.name
    assert "einsums:" in out
    for e in c.einsums:
        assert re.search(rf"^  {re.escape(e.name)}\s+{re.escape(str(e))}", out, flags=re.M), e.name
    expected = defaultdict(int)
    for oc in op_counts(c):
        expected[(oc.category, oc.format)] += oc.count
    assert op_table(out) == dict(expected)
    assert op_table(out), "no op counts printed"
    assert passes(out) >= 1
    assert "compulsory DRAM traffic:" in out


def test_show_gemm_op_counts_follow_the_shapes():
    rc, out, _ = run("show", "gemm", "--set", "M=8", "--set", "K=16", "--set", "afmt=int4")
    assert rc == 0
    assert shapes_line(out) == {"M": 8, "N": 64, "K": 16}
    assert re.search(r"^A\s+\[M, K\]\s+8x16\s+int4\s+input", out, flags=re.M)
    ops = op_table(out)
    assert ops[("mul", "int32")] == 8 * 64 * 16
    assert ops[("add", "int32")] == 8 * 64 * (16 - 1)


@pytest.mark.parametrize("name, sets, expected", [
    ("attention-3pass", [], 3),
    ("attention-2pass", [], 2),
    ("attention-1pass", [], 1),
    ("attention-3pass", ["M=1000"], 3),
    ("attention-2pass", ["M=1000", "M0=64"], 2),
    ("attention-1pass", ["M=1000", "M0=64"], 1),
    ("attention-1pass", ["M=64", "M0=64"], 1),
    ("attention-1pass", ["M=5", "M0=64"], 1),
])
def test_attention_pass_counts(name, sets, expected):
    argv = ["show", name] + [x for s in sets for x in ("--set", s)]
    rc, out, err = run(*argv)
    assert rc == 0 and err == ""
    assert passes(out) == expected
    assert re.search(rf"^passes: {expected} \(.*M: {expected}\b", out, flags=re.M)
    shapes = shapes_line(out)
    for s in sets:
        k, v = s.split("=")
        assert shapes[k] == int(v)
    if "M0" in shapes:
        assert shapes["M1"] == -(-shapes["M"] // shapes["M0"])  # 1000 / 64 -> 16 tiles, the last one padded
    assert "attention I/O lower bound" in out


def test_show_a_cascade_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("shapes: {M: 3}\ntensors: {X: [M]}\neinsums:\n  - Y[m] = exp(X[m])\n")
    rc, out, err = run("show", str(path))
    assert rc == 0 and err == ""
    assert out.startswith(f"cascade mine ({path})")
    assert op_table(out) == {("exp", "fp32"): 3}


@pytest.mark.parametrize("sets, pattern", [
    (["Q=3"], r"attention-1pass:\d+: shapes: unknown shape 'Q' for cascade attention-1pass"),
    (["M=0"], r"attention-1pass:\d+: shapes\.M: size of rank M must be a positive integer, not 0"),
    (["M=-3"], r"attention-1pass:\d+: shapes\.M: size of rank M must be a positive integer, not -3"),
    (["M=abc"], r"attention-1pass:\d+: shapes\.M: 'abc' refers to an unknown or circular shape"),
    (["M=2.5"], r"attention-1pass:\d+: shapes\.M: unsupported shape expression '2\.5'"),
    (["M0=0"], r"attention-1pass:\d+: shapes\.M0: size of rank M0 must be a positive integer, not 0"),
    (["M1=4"], r"attention-1pass:\d+: partitions\.M: rank 'M1' is derived from the partition of M"),
    (["M"], r"--set: expected K=V, not 'M'"),
])
def test_bad_set_is_a_one_line_error(sets, pattern):
    rc, out, err = run("show", "attention-1pass", *[x for s in sets for x in ("--set", s)])
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.fullmatch(r"einsynth: error: " + pattern + r".*\n", err), err


@pytest.mark.parametrize("workload, pattern", [
    ("nosuch", r"unknown workload 'nosuch'; built-in: attention-1pass, .*"),
    ("nosuch.yaml", r"nosuch\.yaml: no such file"),
])
def test_unknown_workload(workload, pattern):
    rc, out, err = run("show", workload)
    assert rc == 2 and out == ""
    assert re.fullmatch(r"einsynth: error: " + pattern + r"\n", err), err


def test_console_script_end_to_end():
    script = Path(sys.executable).parent / "einsynth"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "explore.cli"]
    good = subprocess.Popen(cmd + ["show", "attention-1pass", "--set", "M=1000", "--set", "M0=64"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad = subprocess.Popen(cmd + ["show", "attention-1pass", "--set", "M=abc"], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = good.communicate(timeout=120)
    assert good.returncode == 0 and err == ""
    assert passes(out) == 1 and shapes_line(out)["M1"] == 16
    out, err = bad.communicate(timeout=120)
    assert bad.returncode == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("einsynth: error: attention-1pass:")
