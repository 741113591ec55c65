"""Tests for dataflow.parser: the cascade YAML format (docs/cascade-format.md) and its errors.

Every file in ``bad_cascades/`` is one malformed cascade. Its first two lines pin the error::

    # expect: einsums[1].init: the iterative einsum RM needs an initial value
    # line: 10

and the message must read ``FILE:10: einsums[1].init: the iterative einsum RM needs ...``: one
line naming the file, the line, the field and the problem (``# line: none`` where no line exists).
"""
import contextlib
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.errors import CascadeError, EinsynthError
from dataflow.formats import get_format
from dataflow.parser import LIBRARY_DIR, cascade_from_dict, library_names, load_cascade, parse_cascade
from explore.cli import main

BAD_DIR = Path(__file__).parent / "bad_cascades"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))
DOC = Path(__file__).parents[2] / "docs" / "cascade-format.md"
REPO = Path(__file__).parents[2]


def _header(path: Path) -> tuple[str, str | None]:
    """The pinned ``(expected message after 'FILE:LINE: ', line)`` of a bad cascade file."""
    lines = path.read_text().split("\n")
    m1 = re.fullmatch(r"# expect: (.+)", lines[0])
    m2 = re.fullmatch(r"# line: (\d+|none)", lines[1])
    assert m1 and m2, f"{path.name} must start with '# expect: ...' and '# line: N|none'"
    return m1.group(1), None if m2.group(1) == "none" else m2.group(1)


def _expected_prefix(path: Path) -> str:
    expect, line = _header(path)
    return f"{path}:{line}: {expect}" if line else f"{path}: {expect}"


def _show(argv) -> tuple[int, str, str]:
    """Run ``einsynth`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


# --- the bad-input suite ---------------------------------------------------------------------

def test_bad_suite_is_large_and_each_file_is_a_distinct_failure():
    assert len(BAD_FILES) >= 35
    expects = [_header(p)[0] for p in BAD_FILES]
    assert len(set(expects)) == len(expects), "two files pin the same message"


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_cascade_is_one_line_error_naming_file_line_and_field(path):
    rc, out, err = _show(["show", str(path)])
    assert rc == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err
    assert err.startswith("einsynth: error: " + _expected_prefix(path)), err
    _, line = _header(path)
    if line is not None:
        assert re.search(re.escape(path.name) + r":\d+: ", err)


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_cascade_python_api_raises_the_same_message(path):
    with pytest.raises(CascadeError) as info:
        load_cascade(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(_expected_prefix(path))
    _, _, err = _show(["show", str(path)])
    assert err == f"einsynth: error: {msg}\n"


def test_pinned_line_is_the_line_of_the_named_item():
    """Where the field is an einsum, the pinned line is the line holding that einsum."""
    checked = 0
    for path in BAD_FILES:
        expect, line = _header(path)
        m = re.match(r"einsums\[(\d+)\]", expect)
        if not m or line is None or path.stem == "yaml-recursive-alias":  # that one names the anchor's line
            continue
        lines = path.read_text().split("\n")
        items = [i for i, text in enumerate(lines, 1) if re.match(r"  - ", text)]
        item = items[int(m.group(1))]
        # the item's own line or (for a field of a block mapping) a line of that item
        following = [i for i in items if i > item]
        end = following[0] if following else len(lines) + 1
        assert item <= int(line) < end, path.name
        checked += 1
    assert checked >= 30


# Real processes, through the console script (the rest run in-process for speed).
SUBPROCESS_FILES = ["yaml-tab-indent", "empty", "recurrence-without-init"]


def _einsynth_cmd() -> list[str]:
    script = Path(sys.executable).parent / "einsynth"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "explore.cli"]


def test_bad_cascades_in_real_subprocesses():
    procs = {}
    for stem in SUBPROCESS_FILES:
        path = BAD_DIR / f"{stem}.yaml"
        procs[path] = subprocess.Popen(_einsynth_cmd() + ["show", str(path)], cwd=REPO, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (path.name, err)
        assert out == ""
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("einsynth: error: " + _expected_prefix(path))


# --- loading ---------------------------------------------------------------------------------

def test_library_names_are_the_yaml_files():
    assert library_names() == sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))
    assert {"gemm", "attention-1pass", "attention-2pass", "attention-3pass", "mpgemm-dequant",
            "mpgemm-lut", "mpgemm-bitserial", "mpgemm-shiftadd"} <= set(library_names())


@pytest.mark.parametrize("name", library_names())
def test_every_library_cascade_loads_by_name_and_by_path(name):
    by_name = load_cascade(name)
    by_path = load_cascade(LIBRARY_DIR / f"{name}.yaml")
    assert by_name.name == by_path.name == name
    assert by_name.shapes == by_path.shapes
    assert [str(e) for e in by_name.einsums] == [str(e) for e in by_path.einsums]
    assert by_name.source == name and by_path.source == str(LIBRARY_DIR / f"{name}.yaml")


def test_unknown_workload_and_missing_file():
    with pytest.raises(CascadeError, match=r"unknown workload 'nosuch'; built-in: .*gemm"):
        load_cascade("nosuch")
    with pytest.raises(CascadeError, match=r"^nosuch\.yaml: no such file$"):
        load_cascade("nosuch.yaml")


def test_unreadable_file_is_a_cascade_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(CascadeError, match=r"latin1\.yaml: cannot read"):
        load_cascade(path)


def test_cascade_errors_are_einsynth_errors():
    assert issubclass(CascadeError, EinsynthError)


GEMM = """\
name: tiny
shapes: {M: 4, K: 6, N: 5}
tensors:
  A: {ranks: [M, K], format: int8}
  B: [K, N]
einsums:
  - Z[m, n] = A[m, k] * B[k, n]
"""


def test_parse_text_defaults():
    c = parse_cascade(GEMM)
    assert c.name == "tiny"
    assert c.description == ""
    assert dict(c.shapes) == {"M": 4, "K": 6, "N": 5}
    assert c.tensors["A"].format == "int8"
    assert c.tensors["B"].format == "fp32"  # default_format defaults to fp32
    assert c.tensors["Z"].ranks == ("M", "N") and c.tensors["Z"].format == "fp32"
    assert c.source is None


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my-matmul.yaml"
    path.write_text(GEMM.replace("name: tiny\n", ""))
    assert load_cascade(path).name == "my-matmul"


def test_messages_without_a_path_say_cascade():
    with pytest.raises(CascadeError, match=r"^<cascade>:7: einsums\[0\]: undefined tensor 'C'"):
        parse_cascade(GEMM.replace("B[k, n]\n", "C[k, n]\n"))
    with pytest.raises(CascadeError, match=r"^<cascade>: a cascade must be a mapping"):
        cascade_from_dict([1, 2])


def test_cascade_from_dict_accepts_plain_data():
    c = cascade_from_dict({"shapes": {"M": 3}, "tensors": {"X": ["M"]}, "einsums": ["Y[m] = X[m] * 2"]})
    assert c.name == "cascade" and c.inputs == ("X",) and c.outputs == ("Y",)


def test_einsum_mapping_fields():
    c = parse_cascade("""\
shapes: {M: 8, M0: 4, P: 3}
partitions: {M: [M1, M0]}
tensors: {X: [M, P]}
einsums:
  - {einsum: "LM[m1, p] = X[m1, m0, p]", reduce: max, name: tile_max}
  - einsum: RM[m1+1, p] = max(RM[m1, p], LM[m1, p])
    init: -inf
    until: M1 - 1
  - {einsum: "S[m1+1, p] = S[m1, p] + LM[m1, p]", init: .inf}
  - {einsum: "T[m1+1, p] = T[m1, p] * LM[m1, p]", init: 1, until: 2, unit: vector}
""")
    lm, rm, s, t = c.einsums
    assert (lm.name, lm.reduce, lm.init, lm.until) == ("tile_max", "max", None, None)
    assert (rm.name, rm.reduce, rm.init, rm.until) == ("RM", None, -math.inf, 1)
    assert s.init == math.inf
    assert (t.init, t.until) == (1, 2)
    assert rm.text == "RM[m1+1, p] = max(RM[m1, p], LM[m1, p])"


# --- shapes, params and overrides --------------------------------------------------------------

def test_shape_expressions():
    c = parse_cascade("""\
shapes:
  N: "3 * K - 2"          # refers to a shape defined later
  K: 7
  A: "K / 2"              # ceil division
  B: "K // 2"
  C: "K % 4"
  D: "2 ** (K - 4)"
  E: "min(K, 5, N)"
  F: "max(K, 5, N)"
  W: "bits('int4')"
  T: "serial_terms('e2m1')"
  S: "integer_scale('e2m1')"
einsums:
  - Y[k] = K
""")
    s = dict(c.shapes)
    assert s["N"] == 19 and s["A"] == 4 and s["B"] == 3 and s["C"] == 3 and s["D"] == 8
    assert s["E"] == 5 and s["F"] == 19
    assert s["W"] == get_format("int4").bits
    assert s["T"] == get_format("e2m1").serial_terms
    assert s["S"] == int(get_format("e2m1").integer_scale)


def test_params_are_substituted_everywhere():
    c = parse_cascade("""\
shapes: {K: 4, B: "bits($wfmt)"}
params: {wfmt: int4, dfmt: int16}
default_format: $dfmt
tensors:
  W: {ranks: [K], format: $wfmt}
einsums:
  - P[b, k] = bitplane(W[k], b, '$wfmt')
""")
    assert c.shapes["B"] == 4
    assert c.tensors["W"].format == "int4"
    assert c.tensors["P"].format == "int16"
    assert "'int4'" in str(c.einsums[0].expr)


def test_param_override_follows_into_shapes_and_formats():
    c = load_cascade("mpgemm-lut", wfmt="int2", KL=3)
    assert c.tensors["W"].format == "int2"
    assert c.shapes["B"] == get_format("int2").bits
    assert c.shapes["J"] == 2 ** (3 - 1)
    assert c.shapes["KG"] == math.ceil(c.shapes["K"] / 3)


def test_shape_override_by_expression_string():
    assert load_cascade("mpgemm-lut", J="2**3").shapes["J"] == 8


def test_uneven_partition_override():
    c = load_cascade("attention-1pass", M=1000, M0=64)
    assert (c.shapes["M"], c.shapes["M0"], c.shapes["M1"]) == (1000, 64, 16)
    assert c.extents["RM"] == (17, c.shapes["P"])


@pytest.mark.parametrize("override, pattern", [
    ({"Q": 3}, r"^attention-1pass:\d+: shapes: unknown shape 'Q' for cascade attention-1pass; "
               r"its shapes are P, M, E, F, M0$"),
    ({"M1": 3}, r"^attention-1pass:\d+: partitions\.M: rank 'M1' is derived from the partition of M"),
    ({"M": 0}, r"^attention-1pass:\d+: shapes\.M: size of rank M must be a positive integer, not 0$"),
    ({"M0": 0}, r"^attention-1pass:\d+: shapes\.M0: size of rank M0 must be a positive integer, not 0$"),
    ({"M": "abc"}, r"^attention-1pass:\d+: shapes\.M: 'abc' refers to an unknown or circular shape$"),
    ({"M": True}, r"^attention-1pass:\d+: shapes\.M: must be a positive integer, not True$"),
])
def test_bad_shape_overrides(override, pattern):
    with pytest.raises(CascadeError, match=pattern):
        load_cascade("attention-1pass", **override)


def test_bad_param_overrides():
    with pytest.raises(CascadeError, match=r"^gemm:\d+: params\.afmt: override must be a string, not 3$"):
        load_cascade("gemm", afmt=3)
    with pytest.raises(CascadeError, match=r"^gemm:\d+: tensors\.A\.format: unknown number format 'int99'"):
        load_cascade("gemm", afmt="int99")
    with pytest.raises(CascadeError, match=r"its shapes are M, N, K and its params afmt, bfmt, zfmt$"):
        load_cascade("gemm", Q=1)


# --- YAML details ------------------------------------------------------------------------------

def test_non_recursive_aliases_are_allowed():
    c = parse_cascade("""\
shapes: {M: 3, K: 2}
tensors:
  A: &mk {ranks: [M, K], format: int8}
  B: *mk
einsums:
  - Z[m, k] = A[m, k] + B[m, k]
""")
    assert c.tensors["B"].ranks == ("M", "K") and c.tensors["B"].format == "int8"


def test_duplicate_key_inside_an_einsum_mapping():
    with pytest.raises(CascadeError, match=r"^<cascade>:6: einsums\[0\]\.init: duplicate key 'init'$"):
        parse_cascade("""\
shapes: {M: 3}
tensors: {X: [M]}
einsums:
  - einsum: R[m+1] = R[m] + X[m]
    init: 0
    init: 1
""")


def test_error_line_of_a_block_mapping_field():
    """A problem found when the cascade is validated points at the einsum's first line."""
    text = """\
shapes: {M: 3}
tensors: {X: [M]}
einsums:
  - einsum: Y[m] = X[m] * 2
    reduce: max
"""
    with pytest.raises(CascadeError, match=r"^<cascade>:4: einsums\[0\]\.reduce: 'max' given but no rank is reduced"):
        parse_cascade(text)


# --- the documentation --------------------------------------------------------------------------

def _doc_cascades() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    return [b for b in blocks if re.search(r"^einsums:", b, flags=re.M) and re.search(r"^shapes:", b, flags=re.M)]


def test_doc_examples_load():
    blocks = _doc_cascades()
    assert len(blocks) >= 6  # gemm, 1-pass attention and the four mpGEMM forms
    for text in blocks:
        parse_cascade(text, path="docs/cascade-format.md")


def test_doc_examples_of_library_cascades_are_the_library_files():
    named = {}
    for text in _doc_cascades():
        m = re.match(r"name: (\S+)\n", text)
        if m and m.group(1) in library_names():
            named[m.group(1)] = text
    assert {"attention-1pass", "mpgemm-dequant", "mpgemm-lut", "mpgemm-bitserial", "mpgemm-shiftadd"} <= set(named)
    # attention-1pass is shown verbatim; the others are the files without their comments
    assert named["attention-1pass"] == (LIBRARY_DIR / "attention-1pass.yaml").read_text()
    for name, text in named.items():
        doc, lib = parse_cascade(text), load_cascade(name)
        assert [str(e) for e in doc.einsums] == [str(e) for e in lib.einsums], name
        assert dict(doc.tensors) == dict(lib.tensors), name
        assert dict(doc.shapes) == dict(lib.shapes), name
