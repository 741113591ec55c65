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


def _mapping_for(cascade, arch, mapping_path, objective, solver="cbc", time_limit=None):
    """The mapping to simulate: the given file, else the ILP's."""
    if mapping_path:
        from mapper.mapping import load_mapping

        return load_mapping(mapping_path, cascade, arch)
    from mapper import map_cascade

    return map_cascade(cascade, arch, objective=objective, solver=solver, time_limit=time_limit).mapping


def cmd_map(args) -> int:
    from pathlib import Path

    from hw.spec import load_architecture
    from mapper import map_cascade

    cascade = _load_workload(args.workload, args.set)
    arch = load_architecture(args.arch)
    result = map_cascade(cascade, arch, objective=args.objective, solver=args.solver, time_limit=args.time_limit)
    text = result.mapping.to_yaml()
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    print(result.summary() if hasattr(result, "summary") else "", file=sys.stderr)
    return 0


def cmd_sim(args) -> int:
    from pathlib import Path

    from hw.spec import load_architecture
    from sim import run_sim

    cascade = _load_workload(args.workload, args.set)
    arch = load_architecture(args.arch)
    mapping = _mapping_for(cascade, arch, args.mapping, args.objective)
    report = run_sim(cascade, arch, mapping)
    print(report.render_table())
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"wrote {args.json}")
    return 0


def cmd_sweep(args) -> int:
    from explore.sweep import load_sweep, run_sweep

    spec = load_sweep(args.sweep)
    summary = run_sweep(spec, args.db, scheduler=args.scheduler, workers=args.workers, progress=not args.quiet)
    print(f"sweep {spec.name}: {summary.total} points, {summary.skipped} already done, {summary.ok} ok, "
          f"{summary.failed} failed -> {args.db}")
    return 0 if summary.failed == 0 else 1


def cmd_report(args) -> int:
    from explore.report import write_report

    for p in write_report(args.db, args.outdir):
        print(f"wrote {p}")
    return 0


def cmd_demo(args) -> int:
    from explore.demo import run_demo

    return run_demo(quick=args.quick)


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

    s = sub.add_parser("map", help="map a workload onto an architecture with the ILP")
    s.add_argument("workload")
    s.add_argument("--arch", required=True)
    s.add_argument("--set", action="append", metavar="K=V")
    s.add_argument("--objective", choices=["latency", "energy", "edp"], default="latency")
    s.add_argument("--solver", choices=["cbc", "highs"], default="cbc")
    s.add_argument("--time-limit", type=float, default=None, help="seconds; returns the best incumbent and its gap")
    s.add_argument("-o", "--output", help="write the mapping YAML here")
    s.set_defaults(fn=cmd_map)

    s = sub.add_parser("sim", help="simulate a workload on an architecture (cycles, utilization, energy)")
    s.add_argument("workload")
    s.add_argument("--arch", required=True)
    s.add_argument("--set", action="append", metavar="K=V")
    s.add_argument("--mapping", help="a mapping YAML (default: run the ILP mapper)")
    s.add_argument("--objective", choices=["latency", "energy", "edp"], default="latency")
    s.add_argument("--json", help="write the report as JSON here")
    s.set_defaults(fn=cmd_sim)

    s = sub.add_parser("sweep", help="run a design-space sweep into a SQLite results store")
    s.add_argument("sweep", help="a sweep YAML file")
    s.add_argument("--db", default="results.sqlite")
    s.add_argument("--scheduler", default=None, help="a Dask scheduler address, tcp://HOST:PORT")
    s.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("report", help="tables and plots from a results store")
    s.add_argument("db")
    s.add_argument("-o", "--outdir", required=True)
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("demo", help="the main job on built-in defaults")
    s.add_argument("--quick", action="store_true", help="smaller shapes")
    s.set_defaults(fn=cmd_demo)
    return p


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
