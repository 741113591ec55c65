"""cocotb benches of the hw package: the pytest side (build, run, check)."""
