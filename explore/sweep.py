"""Design-space sweeps: a YAML spec, a local process pool or a Dask cluster, and a SQLite store.

A sweep file looks like::

    name: lut-vs-mac
    workloads:                      # built-in names or cascade files, with shape/format overrides
      - {workload: mpgemm-lut, set: {M: 64, N: 1024, K: 1024, wfmt: int2}}
      - gemm
    archs: [lut-tc, mac-dequant]    # presets or architecture files
    vary:                           # the cartesian product of these values
      arch.array.rows: [16, 32]     # a dotted path into the architecture YAML
      arch.array.cols: [16, 32]
      workload.M: [64, 256]         # a shape of every workload that has it
    objective: latency              # latency | energy | edp (what the mapper optimizes)
    mapper: ilp                     # ilp | default

Every point is committed to the store as soon as it finishes, so an interrupted sweep loses no
finished point: running it again skips them. A progress bar shows points done, failed and left.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from dataflow.errors import EinsynthError

__all__ = ["SweepSpec", "Point", "load_sweep", "expand", "run_sweep", "evaluate_point", "SweepSummary"]

SWEEP_KEYS = {"name", "workloads", "archs", "vary", "objective", "mapper", "description"}


class SweepError(EinsynthError):
    """A sweep file is malformed."""


@dataclass(frozen=True)
class SweepSpec:
    name: str
    workloads: tuple  # of (workload, overrides dict)
    archs: tuple
    vary: tuple  # of (path, values)
    objective: str = "latency"
    mapper: str = "ilp"
    source: str | None = None


@dataclass(frozen=True)
class Point:
    sweep: str
    workload: str
    workload_set: Mapping[str, Any]
    arch: str
    arch_set: Mapping[str, Any]
    objective: str
    mapper: str

    def as_dict(self) -> dict:
        return {"sweep": self.sweep, "workload": self.workload, "workload_set": dict(self.workload_set),
                "arch": self.arch, "arch_set": dict(self.arch_set), "objective": self.objective,
                "mapper": self.mapper}

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _fail(path, field_name, msg):
    raise SweepError(f"{path}: {field_name}: {msg}")


def load_sweep(path: str | Path) -> SweepSpec:
    p = Path(path)
    if not p.is_file():
        raise SweepError(f"{p}: no such sweep file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SweepError(f"{p}{line}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    return sweep_from_dict(data, str(p))


def sweep_from_dict(data, path: str = "<sweep>") -> SweepSpec:
    if not isinstance(data, dict):
        _fail(path, "document", f"must be a mapping, not {type(data).__name__}")
    for k in data:
        if k not in SWEEP_KEYS:
            _fail(path, k, f"unknown field (expected one of {', '.join(sorted(SWEEP_KEYS))})")
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        _fail(path, "name", f"must be a non-empty string, not {name!r}")
    wl = data.get("workloads")
    if not isinstance(wl, list) or not wl:
        _fail(path, "workloads", f"must be a non-empty list, not {wl!r}")
    workloads = []
    for i, w in enumerate(wl):
        if isinstance(w, str):
            workloads.append((w, {}))
        elif isinstance(w, dict) and isinstance(w.get("workload"), str) and set(w) <= {"workload", "set"}:
            sets = w.get("set") or {}
            if not isinstance(sets, dict):
                _fail(path, f"workloads[{i}].set", f"must be a mapping, not {sets!r}")
            workloads.append((w["workload"], dict(sets)))
        else:
            _fail(path, f"workloads[{i}]", f"must be a name or {{workload: NAME, set: {{...}}}}, not {w!r}")
    archs = data.get("archs")
    if isinstance(archs, str):
        archs = [archs]
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        _fail(path, "archs", f"must be a non-empty list of presets or files, not {archs!r}")
    vary = data.get("vary") or {}
    if not isinstance(vary, dict):
        _fail(path, "vary", f"must be a mapping of dotted paths to value lists, not {vary!r}")
    vlist = []
    for k, vals in vary.items():
        if not isinstance(k, str) or not (k.startswith("arch.") or k.startswith("workload.")):
            _fail(path, f"vary.{k}", "paths start with 'arch.' or 'workload.'")
        if not isinstance(vals, list) or not vals:
            _fail(path, f"vary.{k}", f"must be a non-empty list, not {vals!r}")
        vlist.append((k, tuple(vals)))
    objective = data.get("objective", "latency")
    if objective not in ("latency", "energy", "edp"):
        _fail(path, "objective", f"must be latency, energy or edp, not {objective!r}")
    mapper = data.get("mapper", "ilp")
    if mapper not in ("ilp", "default"):
        _fail(path, "mapper", f"must be ilp or default, not {mapper!r}")
    return SweepSpec(name, tuple(workloads), tuple(archs), tuple(vlist), objective, mapper, path)


def expand(spec: SweepSpec) -> list[Point]:
    """Every design point of the sweep (the cartesian product of ``vary``)."""
    keys = [k for k, _ in spec.vary]
    combos = list(itertools.product(*[v for _, v in spec.vary])) if keys else [()]
    points = []
    for (wname, wset), arch in itertools.product(spec.workloads, spec.archs):
        for combo in combos:
            wo, ao = dict(wset), {}
            for k, v in zip(keys, combo):
                if k.startswith("workload."):
                    wo[k[len("workload."):]] = v
                else:
                    ao[k[len("arch."):]] = v
            points.append(Point(spec.name, wname, wo, arch, ao, spec.objective, spec.mapper))
    return points


def _set_path(d: dict, dotted: str, value):
    cur = d
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value


def build_arch(arch: str, overrides: Mapping[str, Any]):
    from hw.spec import architecture_from_dict, load_architecture

    base = load_architecture(arch)
    if not overrides:
        return base
    d = base.to_dict()
    for k, v in overrides.items():
        _set_path(d, k, v)
    if "name" not in overrides:
        d["name"] = base.name + "".join(f"+{k}={v}" for k, v in sorted(overrides.items()))
    return architecture_from_dict(d)


def build_workload(workload: str, overrides: Mapping[str, Any]):
    from dataflow import load_cascade
    from dataflow.parser import LIBRARY_DIR

    cascade = load_cascade(workload)  # defaults tell which shapes exist
    known = set(cascade.shapes) | _params_of(workload)
    return load_cascade(workload, **{k: v for k, v in overrides.items() if k in known})


def _params_of(workload: str) -> set[str]:
    from dataflow.parser import LIBRARY_DIR

    p = LIBRARY_DIR / f"{workload}.yaml"
    p = p if p.is_file() else Path(workload)
    try:
        data = yaml.safe_load(p.read_text())
        return set((data or {}).get("params") or {}) | set((data or {}).get("shapes") or {})
    except (OSError, yaml.YAMLError):
        return set()


def evaluate_point(point: Point) -> dict:
    """Map and simulate one design point; never raises for a user-level failure."""
    t0 = time.perf_counter()
    try:
        from sim import run_sim

        cascade = build_workload(point.workload, point.workload_set)
        arch = build_arch(point.arch, point.arch_set)
        mapping = None
        if point.mapper == "default":
            from mapper.mapping import default_mapping

            mapping = default_mapping(cascade, arch)
        else:
            from mapper import map_cascade

            mapping = map_cascade(cascade, arch, objective=point.objective).mapping
        report = run_sim(cascade, arch, mapping)
        rep = json.loads(report.to_json())
        cycles = int(rep["cycles"])
        latency = cycles / arch.clock_hz
        energy = float(rep["energy_pj"]["total"])
        util = rep.get("utilization", {})
        util_array = util.get("array") if isinstance(util, dict) else None
        return {"status": "ok", "cycles": cycles, "latency_s": latency, "energy_pj": energy,
                "dram_bytes": int(rep.get("dram_bytes", 0)), "util_array": util_array,
                "edp": latency * energy, "report": rep, "seconds": time.perf_counter() - t0}
    except EinsynthError as exc:
        return {"status": "error", "error": " ".join(str(exc).split()), "seconds": time.perf_counter() - t0}


@dataclass(frozen=True)
class SweepSummary:
    total: int
    skipped: int
    ok: int
    failed: int
    seconds: float


def run_sweep(spec: SweepSpec, db: str | Path, scheduler: str | None = None, workers: int | None = None,
              progress: bool = True, evaluate: Callable[[Point], dict] = evaluate_point) -> SweepSummary:
    """Run every point of ``spec`` not yet in ``db``; on a Dask cluster when ``scheduler`` is given."""
    from tqdm import tqdm

    from .store import ResultStore

    points = expand(spec)
    t0 = time.perf_counter()
    with ResultStore(db) as store:
        done = store.finished_keys()
        todo = [p for p in points if p.key not in done]
        ok = failed = 0
        bar = tqdm(total=len(points), initial=len(points) - len(todo), desc=f"sweep {spec.name}", unit="pt",
                   disable=not progress, dynamic_ncols=True)

        def record(point, result):
            nonlocal ok, failed
            store.put(point.key, point.sweep, point.workload, point.arch, point.as_dict(), result)
            if result["status"] == "ok":
                ok += 1
            else:
                failed += 1
            bar.set_postfix(ok=ok, failed=failed)
            bar.update(1)

        try:
            if scheduler:
                _run_dask(todo, scheduler, evaluate, record)
            elif workers == 1 or len(todo) <= 1:
                for p in todo:
                    record(p, evaluate(p))
            else:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    futs = {pool.submit(evaluate, p): p for p in todo}
                    for f in as_completed(futs):
                        record(futs[f], f.result())
        finally:
            bar.close()
    return SweepSummary(len(points), len(points) - len(todo), ok, failed, time.perf_counter() - t0)


def _run_dask(todo, scheduler, evaluate, record):
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise EinsynthError("--scheduler: Dask is not installed (pip install 'einsynth[dask]')") from None
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise EinsynthError(f"--scheduler: cannot reach Dask scheduler {scheduler}: {exc}") from None
    try:
        futs = {}
        for p in todo:
            futs[client.submit(evaluate, p, pure=False)] = p
        for f in dask_completed(list(futs)):
            record(futs[f], f.result())
    finally:
        client.close()
