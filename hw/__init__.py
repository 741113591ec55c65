"""Hardware: the architecture spec (:mod:`hw.spec`), PE kinds with their golden, cost and RTL views
(:mod:`hw.pe`), the systolic array and its tile cost (:mod:`hw.array`), Verilog export and FPGA
resource reports (:mod:`hw.export`) and the RTL regression behind ``einsynth verify``
(:mod:`hw.verify`). Importing it has no side effects."""
