"""The SQLite results store of design-space sweeps.

One row per design point, keyed by a hash of the point's canonical JSON, so a sweep that is
interrupted and run again skips every point already stored (finished points are committed one by
one and never lost). Failed points are stored with their one-line error and are retried on the
next run.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["ResultStore", "ResultRow"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key         TEXT PRIMARY KEY,
    sweep       TEXT NOT NULL,
    workload    TEXT NOT NULL,
    arch        TEXT NOT NULL,
    point       TEXT NOT NULL,          -- canonical JSON of the design point
    status      TEXT NOT NULL,          -- 'ok' or 'error'
    cycles      INTEGER,
    latency_s   REAL,
    energy_pj   REAL,
    dram_bytes  INTEGER,
    util_array  REAL,
    edp         REAL,
    report      TEXT,                   -- the simulator's JSON report
    error       TEXT,
    seconds     REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS results_sweep ON results (sweep);
"""


@dataclass(frozen=True)
class ResultRow:
    key: str
    sweep: str
    workload: str
    arch: str
    point: Mapping
    status: str
    cycles: int | None
    latency_s: float | None
    energy_pj: float | None
    dram_bytes: int | None
    util_array: float | None
    edp: float | None
    report: Mapping | None
    error: str | None
    seconds: float | None


class ResultStore:
    """A results database at ``path`` (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30)
        self._conn.executescript(SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def finished_keys(self) -> set[str]:
        return {k for (k,) in self._conn.execute("SELECT key FROM results WHERE status = 'ok'")}

    def put(self, key: str, sweep: str, workload: str, arch: str, point: Mapping, result: Mapping) -> None:
        """Store one point's result (``status``, metrics or ``error``) and commit at once."""
        report = result.get("report")
        self._conn.execute(
            "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, sweep, workload, arch, json.dumps(point, sort_keys=True), result["status"],
             result.get("cycles"), result.get("latency_s"), result.get("energy_pj"), result.get("dram_bytes"),
             result.get("util_array"), result.get("edp"),
             json.dumps(report, sort_keys=True) if report is not None else None,
             result.get("error"), result.get("seconds"), time.time()))
        self._conn.commit()

    def rows(self, sweep: str | None = None, status: str | None = None) -> list[ResultRow]:
        q = "SELECT key, sweep, workload, arch, point, status, cycles, latency_s, energy_pj, dram_bytes, " \
            "util_array, edp, report, error, seconds FROM results"
        cond, args = [], []
        if sweep is not None:
            cond.append("sweep = ?")
            args.append(sweep)
        if status is not None:
            cond.append("status = ?")
            args.append(status)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        q += " ORDER BY finished_at"
        out = []
        for r in self._conn.execute(q, args):
            out.append(ResultRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8], r[9], r[10],
                                 r[11], json.loads(r[12]) if r[12] else None, r[13], r[14]))
        return out

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self._conn.execute("SELECT COUNT(*) FROM results WHERE status = ?", (status,)).fetchone()[0]

    @staticmethod
    def is_store(path: str | Path) -> bool:
        p = Path(path)
        if not p.is_file():
            return False
        try:
            with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT name FROM sqlite_master WHERE name='results'").fetchone() is not None
        except sqlite3.DatabaseError:
            return False


def keys_of(points: Iterable) -> list[str]:
    return [p.key for p in points]
