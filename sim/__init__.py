"""The cycle-level simulator: engine, compute units, energy accounting and the Report.

    from sim import run_sim
    report = run_sim(cascade, arch, mapping)      # mapping=None: mapper.default_mapping
    print(report.render_table()); report.to_json()
"""
from sim.report import EnergyBreakdown, Report
from sim.simulator import run_sim, simulate

__all__ = ["run_sim", "simulate", "Report", "EnergyBreakdown"]
