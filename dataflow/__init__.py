"""Extended-Einsum workloads: the IR, the YAML format, number formats, the interpreter and analysis.

The public API other tools script against::

    from dataflow import load_cascade, evaluate, random_inputs
    c = load_cascade("attention-1pass", P=1024, M=1024)
    out = evaluate(c, random_inputs(c, seed=0))     # every tensor the cascade defines
"""
from .errors import CascadeError, EinsynthError, FormatError
from .ir import Cascade, Einsum, Tensor, make_cascade
from .parser import library_names, load_cascade, parse_cascade
from .interpreter import evaluate, random_inputs
from .analysis import attention_io_lower_bound, footprints, op_counts, pass_count, pass_counts

__all__ = [
    "Cascade", "Einsum", "Tensor", "make_cascade", "load_cascade", "parse_cascade", "library_names",
    "evaluate", "random_inputs", "op_counts", "footprints", "pass_counts", "pass_count",
    "attention_io_lower_bound", "EinsynthError", "CascadeError", "FormatError",
]
