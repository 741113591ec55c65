"""Sweeps: spec validation, the SQLite store, resuming after an interruption, Dask, reports."""
import sqlite3

import pytest

from explore.cli import main
from explore.report import pareto_front, write_report
from explore.store import ResultStore
from explore.sweep import SweepError, evaluate_point, expand, run_sweep, sweep_from_dict

SPEC = {
    "name": "tiny",
    "workloads": [{"workload": "gemm", "set": {"M": 40, "N": 24, "K": 64}}],
    "archs": ["mac-int8-32x32"],
    "vary": {"arch.array.rows": [8, 16], "arch.array.cols": [8, 16]},
    "mapper": "default",
}


def test_expand_is_the_cartesian_product_with_stable_keys():
    pts = expand(sweep_from_dict(SPEC))
    assert len(pts) == 4
    assert len({p.key for p in pts}) == 4
    assert [p.key for p in pts] == [p.key for p in expand(sweep_from_dict(SPEC))]
    assert {(p.arch_set["array.rows"], p.arch_set["array.cols"]) for p in pts} == {(8, 8), (8, 16), (16, 8), (16, 16)}


@pytest.mark.parametrize("patch, message", [
    ({"workloads": []}, "sweep.yaml: workloads: must be a non-empty list"),
    ({"archs": 3}, "sweep.yaml: archs: must be a non-empty list"),
    ({"vary": {"rows": [1]}}, "sweep.yaml: vary.rows: paths start with 'arch.' or 'workload.'"),
    ({"vary": {"arch.array.rows": 8}}, "sweep.yaml: vary.arch.array.rows: must be a non-empty list, not 8"),
    ({"objective": "speed"}, "sweep.yaml: objective: must be latency, energy or edp, not 'speed'"),
    ({"mapper": "greedy"}, "sweep.yaml: mapper: must be ilp or default, not 'greedy'"),
    ({"colour": 1}, "sweep.yaml: colour: unknown field"),
])
def test_bad_sweep_specs(patch, message):
    with pytest.raises(SweepError) as exc:
        sweep_from_dict({**SPEC, **patch}, "sweep.yaml")
    assert str(exc.value).startswith(message)


def test_a_failing_point_is_stored_with_its_one_line_error():
    spec = sweep_from_dict({**SPEC, "vary": {"arch.array.rows": [0]}})
    res = evaluate_point(expand(spec)[0])
    assert res["status"] == "error"
    assert "array.rows" in res["error"] and "\n" not in res["error"]


def test_sweep_resumes_without_losing_finished_points(tmp_path):
    db = tmp_path / "r.sqlite"
    spec = sweep_from_dict(SPEC)
    calls = []

    def interrupted(point):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(point.key)
        return evaluate_point(point)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, db, workers=1, progress=False, evaluate=interrupted)
    with ResultStore(db) as store:
        assert store.finished_keys() == set(calls)
    again = []

    def counting(point):
        again.append(point.key)
        return evaluate_point(point)

    summary = run_sweep(spec, db, workers=1, progress=False, evaluate=counting)
    assert summary.skipped == 2 and summary.ok == 2 and summary.failed == 0
    assert not set(again) & set(calls)
    with ResultStore(db) as store:
        rows = store.rows()
    assert len(rows) == 4 and all(r.status == "ok" for r in rows)
    # bigger arrays never take more cycles on this GEMM
    by = {(r.point["arch_set"]["array.rows"], r.point["arch_set"]["array.cols"]): r.cycles for r in rows}
    assert by[(16, 16)] <= by[(8, 8)]


def test_sweep_on_a_real_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    db = tmp_path / "d.sqlite"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        summary = run_sweep(sweep_from_dict(SPEC), db, scheduler=cl.scheduler_address, progress=False)
    assert summary.ok == 4
    with ResultStore(db) as store:
        assert store.count("ok") == 4


def test_cli_sweep_and_report(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    import yaml

    sweep.write_text(yaml.safe_dump(SPEC))
    db = tmp_path / "r.sqlite"
    assert main(["sweep", str(sweep), "--db", str(db), "--workers", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 points, 0 already done, 4 ok, 0 failed" in out
    assert main(["sweep", str(sweep), "--db", str(db), "--quiet"]) == 0
    assert "4 already done" in capsys.readouterr().out
    outdir = tmp_path / "rep"
    assert main(["report", str(db), "-o", str(outdir)]) == 0
    for name in ("results.csv", "summary.md", "pareto.png", "pareto.pdf"):
        assert (outdir / name).stat().st_size > 0
    assert (outdir / "results.csv").read_text().count("\n") == 5
    assert "Pareto front" in (outdir / "summary.md").read_text()


def test_report_on_a_non_database_is_a_one_line_error(tmp_path, capsys):
    bogus = tmp_path / "x.sqlite"
    bogus.write_text("not a database")
    assert main(["report", str(bogus), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not an einsynth results database" in err


def test_missing_sweep_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"einsynth: error: {tmp_path / 'nope.yaml'}: no such sweep file"


def test_pareto_front():
    pts = [(1, 9), (2, 5), (3, 6), (4, 1), (2, 7), (5, 1)]
    assert sorted(pareto_front(pts)) == [0, 1, 3]
