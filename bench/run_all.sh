#!/usr/bin/env bash
# Run every benchmark in one go (`make bench`); the output also goes to bench/last-run.log.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:5000}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
{
  started=$(date +%s)
  "$PYTHON" bench/equivalence.py --batches 3000 --numbers 50000
  echo
  "$PYTHON" bench/cpu_path.py
  echo
  # The same CPU path with the collector off, and with glibc's trimming and mmap thresholds
  # raised: what a handler-level GC pause or the MALLOC_* variables would change.
  "$PYTHON" bench/cpu_path.py --gc off --repeats 3 --no-before
  echo
  MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=268435456 \
    "$PYTHON" bench/cpu_path.py --repeats 3 --no-before
  echo
  "$PYTHON" bench/end_to_end.py
  echo
  "$PYTHON" bench/hot_keys.py
  echo
  "$PYTHON" bench/cold_start.py
  echo
  "$PYTHON" bench/memory.py
  echo
  "$PYTHON" bench/freshness.py
  echo
  "$PYTHON" bench/cluster_invalidation.py
  echo
  echo "# all benchmarks: $(( $(date +%s) - started )) s"
} 2>&1 | tee bench/last-run.log
