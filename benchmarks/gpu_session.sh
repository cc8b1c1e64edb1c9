#!/usr/bin/env bash
# One call on a lent GPU machine (Python 3.12 + JAX, no Keras, no internet): install the wheels
# carried in .whl/, point the package at the data carried in .data/, run the trainings in parallel
# (benchmarks/gpu_runs.py) and leave the runs' small files and the summary in $OUT.
#
#   here:  make gpu-carry                      # .whl/ (keras, namex, optree, ...) and .data/
#   there: bash benchmarks/gpu_session.sh 420 "NAME=train flags" ...   (carry: .whl .data)
set -euo pipefail
limit="$1"; shift
site=/tmp/site
pip install --quiet --no-index --no-deps --target "$site" .whl/*.whl
export PYTHONPATH="$site:src" KERAS_BACKEND=jax FASHION_TCN_DATA="$PWD/.data"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
out="${OUT:-runs/gpu}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt" || true
python -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" \
  | tee -a "$out/gpu.txt"
python benchmarks/gpu_runs.py --limit "$limit" --out "$out/runs" "$@" | tee "$out/summary.txt"
# what comes back: small files only (the models stay there)
find "$out/runs" \( -name '*.keras' -o -name '*.npz' -o -name '*.png' -o -name '*.html' \) -delete
