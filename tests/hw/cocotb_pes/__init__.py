"""The bench of the bit-serial, LUT and shift-add PEs (:mod:`.pes_bench`), its cocotb test module
(:mod:`.pes_cocotb`) and the pytest side that runs it (:mod:`.pes_runner`)."""
