#!/usr/bin/env bash
# KCL 3 feasibility spike against the emulator: two MultiLangDaemon workers share a 4-shard
# stream; one is killed (-9) mid-stream and the other must take its shards, losing nothing.
# Not part of `make test`. Needs java 17, mvn and the emulator on 127.0.0.1:5000. Downloads
# KCL's jars (Maven Central) and amazon-kclpy's source (PyPI) into build/kcl/ (git-ignored).
# Usage: tests/kcl/fleet_spike.sh   (about 4 minutes; prints what each worker did)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/kcl
WORK=$ROOT/build/kcl
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$WORK/shim"
if [ ! -f "$WORK/jars/amazon-kinesis-client-multilang-3.1.3.jar" ]; then
  mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$WORK/jars"
fi
javac -cp "$WORK/jars/*" -d "$WORK/shim" "$HERE/KinesisClientUtil.java"
if [ ! -d "$WORK/amazon_kclpy-3.2.0" ]; then
  "$PY" -m pip download -q --no-deps --no-binary :all: amazon-kclpy==3.2.0 -d "$WORK"
  tar -xzf "$WORK/amazon_kclpy-3.2.0.tar.gz" -C "$WORK"
fi

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:5000
export PYTHONPATH=$WORK/amazon_kclpy-3.2.0
NAME=kcl-spike-$$
export SPIKE_OUT=$WORK/$NAME.jsonl
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  sleep 3
  for pid in "${PIDS[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done
  "$PY" "$HERE/spike_tool.py" cleanup "$NAME" "$NAME" || true
}
trap stop_all EXIT

for worker in A B; do
  cat > "$WORK/$NAME-$worker.properties" <<PROPERTIES
executableName = $PY $HERE/spike_processor.py
streamName = $NAME
applicationName = $NAME
AwsCredentialsProvider = DefaultCredentialsProvider
processingLanguage = python/3.11
initialPositionInStream = TRIM_HORIZON
regionName = us-east-1
kinesisEndpoint = http://127.0.0.1:5000
dynamoDBEndpoint = http://127.0.0.1:5000
metricsLevel = NONE
retrievalMode = POLLING
workerId = worker$worker
failoverTimeMillis = 10000
idleTimeBetweenReadsInMillis = 1000
shardSyncIntervalMillis = 10000
PROPERTIES
done

"$PY" "$HERE/spike_tool.py" put "$NAME" 0 40
for worker in A B; do
  # setsid: each daemon leads its own process group, so its record processors stop with it.
  # aws.cborEnabled=false: the emulator answers the SDK's CBOR (application/x-amz-cbor-1.1)
  # with HTTP 500; JSON works.
  SPIKE_WORKER=$worker setsid java -Xmx256m -Daws.cborEnabled=false \
    -cp "$WORK/shim:$WORK/jars/*" software.amazon.kinesis.multilang.MultiLangDaemon \
    --properties-file "$WORK/$NAME-$worker.properties" > "$WORK/$NAME-$worker.log" 2>&1 &
  PIDS+=($!)
done
echo "workers A=${PIDS[0]} B=${PIDS[1]} started $(date +%T); logs in $WORK/$NAME-*.log"
sleep 75
echo "--- $(date +%T) before the kill"
"$PY" "$HERE/spike_tool.py" summary "$SPIKE_OUT" 40
"$PY" "$HERE/spike_tool.py" put "$NAME" 40 20
sleep 5
echo "--- $(date +%T) kill -9 worker A (process group ${PIDS[0]})"
kill -9 -- "-${PIDS[0]}"
"$PY" "$HERE/spike_tool.py" put "$NAME" 60 20
sleep 90
echo "--- $(date +%T) after"
"$PY" "$HERE/spike_tool.py" summary "$SPIKE_OUT" 80
grep -h "Assigned lease" "$WORK/$NAME-B.log" | cut -c1-200 || true
