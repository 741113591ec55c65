"""The ``einsynth`` command line (the contract in DESIGN.md).

Every user error (a malformed file, an impossible shape, an unsupported format, an infeasible
mapping) is printed as one line, ``einsynth: error: <file>: <field>: <problem>``, and the command
exits with status 2. No traceback.
"""
from __future__ import annotations

import argparse
import sys

from dataflow.errors import EinsynthError

__all__ = ["main", "build_parser"]


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise EinsynthError(f"--set: expected K=V, not {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        v = v.strip()
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    return out


def _load_workload(name, sets):
    from dataflow import load_cascade

    return load_cascade(name, **_parse_sets(sets))


def cmd_show(args) -> int:
    from explore.show import render_show

    cascade = _load_workload(args.workload, args.set)
    print(render_show(cascade, onchip_words=args.onchip_words))
    return 0


def cmd_rtl(args) -> int:
    from hw.export import export_rtl
    from hw.spec import load_architecture

    arch = load_architecture(args.arch)
    result = export_rtl(arch, args.outdir, fpga=args.fpga)
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def cmd_verify(args) -> int:
    import tempfile

    from hw.spec import load_architecture
    from hw.verify import run_verification

    arch = load_architecture(args.arch)
    with tempfile.TemporaryDirectory(prefix="einsynth-verify-") as tmp:
        result = run_verification(arch, simulator=args.simulator, workdir=args.workdir or tmp)
    print(result.summary() if hasattr(result, "summary") else result)
    return 0 if getattr(result, "passed", False) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="einsynth", description="Extended-Einsum cascades -> ILP mapping -> "
                                "cycle-level simulation -> RTL")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("show", help="einsums, shapes, op counts, pass counts and I/O lower bounds")
    s.add_argument("workload", help="a built-in cascade name or a cascade YAML file")
    s.add_argument("--set", action="append", metavar="K=V", help="override a shape or format param")
    s.add_argument("--onchip-words", type=int, default=None,
                   help="on-chip capacity (words) for the attention I/O lower bound")
    s.set_defaults(fn=cmd_show)

    s = sub.add_parser("rtl", help="write Verilog, a file list and a Yosys resource report")
    s.add_argument("arch", help="a preset name or an architecture YAML file")
    s.add_argument("-o", "--outdir", required=True)
    s.add_argument("--fpga", choices=["ice40", "xilinx", "generic"], default="ice40")
    s.set_defaults(fn=cmd_rtl)

    s = sub.add_parser("verify", help="run the cocotb regression of an architecture's blocks")
    s.add_argument("arch")
    s.add_argument("--simulator", choices=["icarus", "verilator"], default="icarus")
    s.add_argument("--workdir", default=None, help="keep build products here (default: a temporary dir)")
    s.set_defaults(fn=cmd_verify)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return p


_EXTRA_COMMANDS: list = []


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except EinsynthError as exc:
        msg = " ".join(str(exc).split("\n"))
        print(f"einsynth: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("einsynth: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
