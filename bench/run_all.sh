#!/usr/bin/env bash
# Run every benchmark in one go (`make bench`); the output also goes to bench/last-run.log.
# A failing script does not stop the others: each failure is named at the end, and the run
# then exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:5000}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
failed=()
# step <command...>: run one benchmark; remember it if it fails.
step() {
  "$@" || { echo "FAILED ($?): $*"; failed+=("$*"); }
  echo
}
{
  started=$(date +%s)
  echo "# code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  step "$PYTHON" bench/equivalence.py --batches 3000 --numbers 50000
  step "$PYTHON" bench/cpu_path.py
  # The same CPU path with the collector off, and with glibc's trimming and mmap thresholds
  # raised: what a handler-level GC pause or the MALLOC_* variables would change.
  step "$PYTHON" bench/cpu_path.py --gc off --repeats 3 --no-before
  step env MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=268435456 \
    "$PYTHON" bench/cpu_path.py --repeats 3 --no-before
  step "$PYTHON" bench/end_to_end.py
  # The same with a 1 ms round trip to OpenSearch (bench/delay_proxy.py), as across a network.
  step "$PYTHON" bench/end_to_end.py --sizes 1000 --runs 3 --rtt-ms 1
  step "$PYTHON" bench/hot_keys.py
  step "$PYTHON" bench/cold_start.py
  step "$PYTHON" bench/memory.py
  step "$PYTHON" bench/backfill.py
  step "$PYTHON" bench/export_read.py --rounds 2
  step "$PYTHON" bench/freshness.py
  step "$PYTHON" bench/cluster_invalidation.py
  step "$PYTHON" bench/consistency.py
  echo "# all benchmarks: $(( $(date +%s) - started )) s"
  if [ "${#failed[@]}" -gt 0 ]; then
    printf '# FAILED: %s\n' "${failed[@]}"
    exit 1
  fi
} 2>&1 | tee bench/last-run.log
