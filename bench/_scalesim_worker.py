"""Run GEMMs through SCALE-Sim 3 (inside SCALE-Sim's own venv; see bench/scalesim_compare.py).

Reads a JSON list of jobs {name, M, N, K, dataflow, rows, cols, sram_kib} on stdin and prints a
JSON list of results {name, total_cycles, stall_cycles, row_fold, col_fold, seconds}.
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import time

CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {sram_kib}
FilterSramSzkB : {sram_kib}
OfmapSramSzkB : {sram_kib}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Dataflow : {df}
Bandwidth : 100
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
FilterCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : CALC
UseRamulatorTrace : False
"""

DF = {"output-stationary": "os", "weight-stationary": "ws", "input-stationary": "is"}


def run(job, workdir):
    from scalesim.scale_sim import scalesim

    cfg = os.path.join(workdir, f"{job['name']}.cfg")
    topo = os.path.join(workdir, f"{job['name']}.csv")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(name=job["name"], rows=job["rows"], cols=job["cols"],
                              sram_kib=job["sram_kib"], df=DF[job["dataflow"]]))
    with open(topo, "w") as f:
        f.write("Layer, M, N, K,\n")
        f.write(f"{job['name']}, {job['M']}, {job['N']}, {job['K']},\n")
    layout = os.path.join(workdir, f"{job['name']}_layout.csv")
    with open(layout, "w") as f:       # required by SCALE-Sim even without a custom layout
        f.write("Layer, " + ", ".join(f"f{i}" for i in range(18)) + ",\n")
        f.write(f"{job['name']}, " + ", ".join("1" for _ in range(18)) + ",\n")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        start = time.perf_counter()
        sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
                       input_type_gemm=True)
        sim.run_scale(top_path=workdir)
        seconds = time.perf_counter() - start
    layer = sim.runner.single_layer_sim_object_list[0]
    compute = layer.compute_system
    return {"name": job["name"], "total_cycles": int(layer.total_cycles), "stall_cycles": int(layer.stall_cycles),
            "row_fold": int(compute.row_fold), "col_fold": int(compute.col_fold),
            "demand_rows": int(compute.ifmap_demand_matrix.shape[0]), "seconds": seconds}


def main():
    jobs = json.load(sys.stdin)
    out = []
    with tempfile.TemporaryDirectory(prefix="scalesim-") as workdir:
        for job in jobs:
            out.append(run(job, workdir))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
