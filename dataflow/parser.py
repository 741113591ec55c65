"""The YAML format of cascades (see docs/cascade-format.md) and its loader.

Every error names the file, the line, the field and the value, on one line::

    attn.yaml:14: einsums[2]: undefined tensor 'QQ' in 'QK[m, p] = QQ[e, p] * K[e, m]'

Shapes are symbolic: ``shapes`` gives each rank a default size (an integer or an arithmetic
expression over other shapes, such as ``2**(KL-1)``), and :func:`load_cascade` binds overrides
(``load_cascade('gemm', M=256)``). ``params`` are named strings (number formats) that tensor
formats and string constants reference as ``$name``.
"""
from __future__ import annotations

import ast
import math
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import CascadeError, EinsynthError, FormatError
from .formats import get_format
from .expr import parse_einsum
from .ir import Cascade, Einsum, Tensor, make_cascade

__all__ = ["load_cascade", "parse_cascade", "cascade_from_dict", "LIBRARY_DIR", "library_names"]

LIBRARY_DIR = Path(__file__).parent / "library" / "cascades"
TOP_KEYS = {"name", "description", "shapes", "params", "partitions", "default_format", "tensors", "einsums"}
EINSUM_KEYS = {"einsum", "name", "reduce", "init", "until", "unit"}
TENSOR_KEYS = {"ranks", "format"}


def library_names() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


class _Located:
    """Line numbers of a composed YAML document, by path of keys/indices."""

    def __init__(self, path: str | None):
        self.path = path
        self.lines: dict[tuple, int] = {}
        self._open: set[int] = set()  # collections being recorded (to catch recursive aliases)
        self._done: set[int] = set()  # collections already recorded once (aliases are not re-walked)

    def record(self, node, key=()):
        self.lines[key] = node.start_mark.line + 1
        if id(node) in self._open:
            raise CascadeError(f"{self.where(*key)}: a YAML alias may not refer to a node that contains it")
        if id(node) in self._done:
            return
        self._open.add(id(node))
        self._record_children(node, key)
        self._open.discard(id(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self._done.add(id(node))

    def _record_children(self, node, key):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for k, v in node.value:
                kv = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                if kv in seen:
                    raise CascadeError(f"{self.path or '<cascade>'}:{k.start_mark.line + 1}: {_fmt_key(key + (kv,))}: "
                                       f"duplicate key {kv!r}")
                seen.add(kv)
                self.record(v, key + (kv,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self.record(v, key + (i,))

    def where(self, *key) -> str:
        line = None
        k = tuple(key)
        while k and k not in self.lines:
            k = k[:-1]
        line = self.lines.get(k)
        loc = f"{self.path or '<cascade>'}:{line}" if line else f"{self.path or '<cascade>'}"
        return f"{loc}: {_fmt_key(tuple(key))}" if key else loc


def _fmt_key(key: tuple) -> str:
    out = ""
    for k in key:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def parse_cascade(text: str, path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Cascade:
    """Parse cascade YAML ``text`` (from ``path``, for messages) with shape/param ``overrides``."""
    loc = _Located(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CascadeError(f"{path or '<cascade>'}{line}: YAML syntax error: {problem}") from None
    if node is None:
        raise CascadeError(f"{path or '<cascade>'}: the file is empty; a cascade needs 'einsums'")
    loc.record(node)
    try:
        data = yaml.SafeLoader(text).construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CascadeError(f"{path or '<cascade>'}{line}: YAML error: {problem}") from None
    return cascade_from_dict(data, overrides=overrides, loc=loc)


def cascade_from_dict(data: Any, overrides: Mapping[str, Any] | None = None, loc: _Located | None = None,
                      path: str | None = None) -> Cascade:
    loc = loc or _Located(path)
    if not isinstance(data, dict):
        raise CascadeError(f"{loc.where()}: a cascade must be a mapping with 'einsums', not {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise CascadeError(f"{loc.where(unknown[0])}: unknown field {unknown[0]!r}; "
                           f"allowed: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name") or (Path(loc.path).stem if loc.path else "cascade")
    if not isinstance(name, str):
        raise CascadeError(f"{loc.where('name')}: must be a string, not {name!r}")

    params = _mapping(data, "params", loc)
    for k, v in params.items():
        if not isinstance(v, str):
            raise CascadeError(f"{loc.where('params', k)}: params are strings (number formats), not {v!r}")
    raw_shapes = _mapping(data, "shapes", loc)
    overrides = dict(overrides or {})
    for k, v in overrides.items():
        if k in params:
            if not isinstance(v, str):
                raise CascadeError(f"{loc.where('params', k)}: override must be a string, not {v!r}")
            params[k] = v
        elif k in raw_shapes:
            raw_shapes[k] = v
        else:
            derived = {c[0]: parent for parent, c in _mapping(data, "partitions", loc).items()
                       if isinstance(c, list) and c}
            if k in derived:
                raise CascadeError(f"{loc.where('partitions', derived[k])}: rank {k!r} is derived from the "
                                   f"partition of {derived[k]}; set {derived[k]} or the inner rank instead")
            known = f"its shapes are {', '.join(raw_shapes) or '(none)'}"
            if params:
                known += f" and its params {', '.join(params)}"
            raise CascadeError(f"{loc.where('shapes')}: unknown shape {k!r} for cascade {name}; {known}")
    for k in raw_shapes:
        if not (isinstance(k, str) and k.isidentifier() and k[0].isupper()):
            raise CascadeError(f"{loc.where('shapes', k)}: rank names are upper-case identifiers, not {k!r}")
    shapes = _bind_shapes({k: _subst_params(v, params, loc, ("shapes", k)) for k, v in raw_shapes.items()}, loc)

    partitions = _mapping(data, "partitions", loc)
    default_format = _subst(data.get("default_format", "fp32"), params, loc, ("default_format",))
    try:
        get_format(default_format)
    except FormatError as exc:
        raise CascadeError(f"{loc.where('default_format')}: {exc}") from None

    tensors = {}
    for tname, spec in _mapping(data, "tensors", loc).items():
        where = loc.where("tensors", tname)
        if not (isinstance(tname, str) and tname.isidentifier()):
            raise CascadeError(f"{where}: tensor names are identifiers, not {tname!r}")
        if isinstance(spec, list):
            spec = {"ranks": spec}
        if not isinstance(spec, dict):
            raise CascadeError(f"{where}: must be a mapping with 'ranks' and 'format', not {spec!r}")
        bad = sorted(set(map(str, spec)) - TENSOR_KEYS)
        if bad:
            raise CascadeError(f"{loc.where('tensors', tname, bad[0])}: unknown field {bad[0]!r}; allowed: ranks, format")
        ranks = spec.get("ranks")
        if not isinstance(ranks, list) or not all(isinstance(r, str) for r in ranks):
            raise CascadeError(f"{loc.where('tensors', tname, 'ranks')}: must be a list of rank names, not {ranks!r}")
        fmt = _subst(spec.get("format", default_format), params, loc, ("tensors", tname, "format"))
        tensors[tname] = Tensor(tname, tuple(ranks), fmt)

    raw_einsums = data.get("einsums")
    if "einsums" not in data:
        raise CascadeError(f"{loc.where()}: missing field 'einsums' (a list of 'OUT[...] = expression' strings)")
    if not isinstance(raw_einsums, list) or not raw_einsums:
        raise CascadeError(f"{loc.where('einsums')}: must be a non-empty list of einsums, not {raw_einsums!r}")
    einsums = []
    index_of = {}
    defined_at = {}
    # `until` may name the outer rank of a partition (`until: M1 - 1`), which make_cascade derives
    until_shapes = dict(shapes)
    for parent, children in partitions.items():
        if (isinstance(children, list) and len(children) == 2 and all(c in shapes for c in (parent, children[1]))
                and isinstance(shapes[children[1]], int) and shapes[children[1]] > 0):
            until_shapes.setdefault(children[0], -(-shapes[parent] // shapes[children[1]]))
    for i, item in enumerate(raw_einsums):
        where = loc.where("einsums", i)
        if isinstance(item, str):
            item = {"einsum": item}
        if not isinstance(item, dict):
            raise CascadeError(f"{where}: must be a string 'OUT[...] = expr' or a mapping with 'einsum', not {item!r}")
        bad = sorted(set(map(str, item)) - EINSUM_KEYS)
        if bad:
            raise CascadeError(f"{loc.where('einsums', i, bad[0])}: unknown field {bad[0]!r}; "
                               f"allowed: {', '.join(sorted(EINSUM_KEYS))}")
        text = item.get("einsum")
        try:
            out, expr = parse_einsum(text)
        except CascadeError as exc:
            raise CascadeError(f"{loc.where('einsums', i, 'einsum')}: {exc}") from None
        expr = _subst_expr(expr, params, loc, ("einsums", i, "einsum"))
        if out.tensor in defined_at:
            raise CascadeError(f"{where}: tensor {out.tensor} is defined twice "
                               f"(also by einsums[{defined_at[out.tensor]}])")
        defined_at[out.tensor] = i
        ename = item.get("name", out.tensor)
        if not isinstance(ename, str):
            raise CascadeError(f"{loc.where('einsums', i, 'name')}: must be a string, not {ename!r}")
        if ename in index_of:
            raise CascadeError(f"{where}: einsum name {ename!r} is used twice")
        index_of[ename] = i
        reduce = item.get("reduce")
        if reduce is not None and not isinstance(reduce, str):
            raise CascadeError(f"{loc.where('einsums', i, 'reduce')}: must be an operator name, not {reduce!r}")
        init = item.get("init")
        if init is not None:
            init = _number(init, loc, ("einsums", i, "init"))
        until = item.get("until")
        if until is not None:
            try:
                until = _shape_expr(until, until_shapes, loc, ("einsums", i, "until"))
            except KeyError as exc:
                raise CascadeError(f"{loc.where('einsums', i, 'until')}: unknown shape {exc.args[0]!r} "
                                   f"in {until!r}") from None
        einsums.append(Einsum(ename, out, expr, reduce, init, until, text.strip()))

    def locate(kind, key):
        if kind == "einsums":
            return loc.where("einsums", index_of.get(key, key))
        return loc.where(kind, key)

    return make_cascade(name, shapes, tensors, einsums, partitions=partitions, default_format=default_format,
                        description=str(data.get("description", "")), source=loc.path, locate=locate)


def _mapping(data, key, loc) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise CascadeError(f"{loc.where(key)}: must be a mapping, not {value!r}")
    return dict(value)


def _number(value, loc, key) -> float:
    if isinstance(value, bool):
        raise CascadeError(f"{loc.where(*key)}: must be a number, not {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-") in ("inf", ".inf"):
        return -math.inf if value.strip().startswith("-") else math.inf
    raise CascadeError(f"{loc.where(*key)}: must be a number or -inf, not {value!r}")


def _subst(value, params, loc, key) -> str:
    if not isinstance(value, str):
        raise CascadeError(f"{loc.where(*key)}: must be a format name, not {value!r}")
    if value.startswith("$"):
        p = value[1:]
        if p not in params:
            raise CascadeError(f"{loc.where(*key)}: unknown param {value!r}")
        return params[p]
    return value


def _subst_expr(expr, params, loc, key):
    from .expr import Call, Const, Gather, Ref, Access

    def sub(n):
        if isinstance(n, Const) and isinstance(n.value, str):
            return Const(_subst(n.value, params, loc, key))
        if isinstance(n, Call):
            return Call(n.op, tuple(sub(a) for a in n.args))
        if isinstance(n, Ref):
            idx = tuple(Gather(sub(i.expr)) if isinstance(i, Gather) else i for i in n.access.indices)
            return Ref(Access(n.access.tensor, idx))
        return n

    return sub(expr)


_SHAPE_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a ** b, ast.Mod: lambda a, b: a % b}


_FORMAT_SHAPES = {
    "bits": lambda f: f.bits,
    "serial_terms": lambda f: f.serial_terms,
    "integer_scale": lambda f: int(f.integer_scale),
    # the code of value 0 in offset binary: 2^(bits-1) for signed integers, 0 for unsigned
    "zero_code": lambda f: (1 << (f.bits - 1)) if f.is_integer and f.signed else 0,
}


def _subst_params(value, params, loc, key):
    """Replace ``$name`` in a shape expression with the quoted param value."""
    if not isinstance(value, str) or "$" not in value:
        return value
    import re

    def rep(m):
        if m.group(1) not in params:
            raise CascadeError(f"{loc.where(*key)}: unknown param ${m.group(1)} in {value!r}")
        return repr(params[m.group(1)])

    return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", rep, value)


def _shape_expr(value, shapes, loc, key) -> int:
    if isinstance(value, bool):
        raise CascadeError(f"{loc.where(*key)}: must be a positive integer, not {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise CascadeError(f"{loc.where(*key)}: must be a positive integer or an expression, not {value!r}")
    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError:
        raise CascadeError(f"{loc.where(*key)}: cannot parse shape expression {value!r}") from None

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.Name):
            if n.id not in shapes:
                raise KeyError(n.id)
            return shapes[n.id]
        if isinstance(n, ast.BinOp) and type(n.op) in _SHAPE_OPS:
            left, right = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Pow) and right > 64:  # a size past 2**64 is a typo; don't hang on it
                raise CascadeError(f"{loc.where(*key)}: exponent {right} is too large in {value!r}")
            return _SHAPE_OPS[type(n.op)](left, right)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            return -(-ev(n.left) // ev(n.right))  # ceil division, as a partition does
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FORMAT_SHAPES
                and len(n.args) == 1 and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):
            from .formats import get_format
            from .errors import FormatError

            try:
                return _FORMAT_SHAPES[n.func.id](get_format(n.args[0].value))
            except FormatError as exc:
                raise CascadeError(f"{loc.where(*key)}: {exc}") from None
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("min", "max") and n.args:
            return (min if n.func.id == "min" else max)(ev(a) for a in n.args)
        raise CascadeError(f"{loc.where(*key)}: unsupported shape expression {value!r}")

    try:
        out = ev(tree.body)
    except ZeroDivisionError:
        raise CascadeError(f"{loc.where(*key)}: division by zero in {value!r}") from None
    if not isinstance(out, int):
        raise CascadeError(f"{loc.where(*key)}: {value!r} is not an integer")
    return out


def _bind_shapes(raw: Mapping[str, Any], loc) -> dict[str, int]:
    pending = dict(raw)
    bound: dict[str, int] = {}
    while pending:
        progress = False
        for k in list(pending):
            try:
                bound[k] = _shape_expr(pending[k], bound, loc, ("shapes", k))
            except KeyError:
                continue
            del pending[k]
            progress = True
        if not progress:
            k = next(iter(pending))
            raise CascadeError(f"{loc.where('shapes', k)}: {pending[k]!r} refers to an unknown or circular shape")
    return bound


def load_cascade(name_or_path, **shape) -> Cascade:
    """Load a built-in cascade by name or a cascade YAML file, binding shape/param overrides."""
    src = str(name_or_path)
    lib = LIBRARY_DIR / f"{src}.yaml"
    if lib.is_file():
        path = lib
        shown = src
    elif os.path.isfile(src):
        path = Path(src)
        shown = src
    elif src.endswith((".yaml", ".yml")) or os.sep in src:
        raise CascadeError(f"{src}: no such file")
    else:
        raise CascadeError(f"unknown workload {src!r}; built-in: {', '.join(library_names())} "
                           f"(or give the path of a cascade YAML file)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CascadeError(f"{shown}: cannot read: {exc}") from None
    return parse_cascade(text, path=shown, overrides=shape)
