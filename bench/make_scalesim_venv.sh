#!/bin/sh
# Create SCALE-Sim's own virtual environment (SCALE-Sim 3 needs numpy<2.4, einsynth's venv has 2.4).
#   sh bench/make_scalesim_venv.sh            -> .bench_venvs/scalesim (gitignored)
set -eu
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SCALESIM_VENV:-$here/.bench_venvs/scalesim}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "scalesim" "numpy<2.4"
"$venv/bin/python" -c "import scalesim, numpy; print('scalesim ok, numpy', numpy.__version__)"
