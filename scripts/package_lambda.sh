#!/usr/bin/env bash
# Build syncer's Lambda artifact for the runtime in template.yaml (python3.11, x86_64):
#   build/lambda/                  the unpacked package: template.yaml's CodeUri
#   build/syncer-lambda.zip        the same as a zip (aws lambda update-function-code --zip-file)
#   build/lambda-requirements.txt  the exact distributions that went in, with their hashes
# The runtime dependencies come from the lock requirements/lambda.txt (`make lock`), every file
# checked against its hash. Only binary wheels for manylinux2014_x86_64 / CPython 3.11 from the
# package index are used, never this machine's installed packages, so a Mac or an arm64 laptop
# builds the same thing.
#
# Environment:
#   PYTHON                  Python with pip >= 22.2 (default .venv/bin/python)
#   SYNCER_LAMBDA_LOCK      the lock to install (default requirements/lambda.txt)
#   SYNCER_LAMBDA_CONFIG    config copied to the package root as syncer.toml
#                           (default deploy/syncer.lambda.toml)
#   SYNCER_BUNDLE_BOTO3=1   also package boto3/botocore (see EXCLUDE below)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
CONFIG=${SYNCER_LAMBDA_CONFIG:-deploy/syncer.lambda.toml}
PLATFORM=manylinux2014_x86_64   # template.yaml: Architectures [x86_64]
PY_VERSION=3.11                 # template.yaml: Runtime python3.11
OUT=build/lambda
ZIP=build/syncer-lambda.zip
SOURCE_LOCK=${SYNCER_LAMBDA_LOCK:-requirements/lambda.txt}
LOCK=build/lambda-requirements.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Distributions in the lock but left out of the package:
# - opensearch-protobufs, grpcio, protobuf: hard dependencies of opensearch-py 3.x for its
#   optional gRPC transport, which syncer does not use and opensearchpy never imports (about
#   20 MB unpacked). The cold-start check below fails the build if that ever changes.
# - boto3, botocore, s3transfer, jmespath: the Lambda Python runtime ships them, and syncer
#   calls only long-stable APIs (BatchGetItem, SendMessageBatch, SigV4 credentials). Leaving
#   them out makes the zip about 9 times smaller. SYNCER_BUNDLE_BOTO3=1 packages them to pin
#   the SDK version instead of taking the runtime's.
EXCLUDE="opensearch-protobufs grpcio protobuf"
if [ "${SYNCER_BUNDLE_BOTO3:-0}" != 1 ]; then
  EXCLUDE="$EXCLUDE boto3 botocore s3transfer jmespath"
fi

[ -f "$CONFIG" ] || { echo "config $CONFIG not found (SYNCER_LAMBDA_CONFIG)" >&2; exit 1; }
[ -f "$SOURCE_LOCK" ] || { echo "lock $SOURCE_LOCK not found (make lock)" >&2; exit 1; }
mkdir -p build
PIP_TARGET_FLAGS=(--platform "$PLATFORM" --implementation cp --python-version "$PY_VERSION"
  --only-binary=:all:)

echo "building the syncer wheel"
# From a copy of the sources: an in-tree setuptools build leaves build/lib behind, and files
# deleted from syncer/ would linger there and end up in later wheels.
mkdir -p "$WORK/src"
cp pyproject.toml README.md "$WORK/src/"
cp -R syncer "$WORK/src/syncer"
find "$WORK/src" -name __pycache__ -type d -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheel" "$WORK/src"
WHEEL=$(ls "$WORK"/wheel/syncer-*.whl)

echo "taking the runtime dependencies from $SOURCE_LOCK (no dev extras)"
# shellcheck disable=SC2086  # EXCLUDE is a list of words
"$PYTHON" - "$SOURCE_LOCK" "$LOCK" $EXCLUDE <<'EOF'
import re
import sys

source, lock, *exclude = sys.argv[1:]


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# A lock entry is a "name==version \" line followed by its indented hash and comment lines.
skip = {norm(name) for name in exclude}
entries, current = [], None
for line in open(source):
    if line[:1].isalnum():
        current = [line]
        entries.append(current)
    elif current is not None and line.startswith(" "):
        current.append(line)
kept, left_out, lines = [], [], []
for entry in entries:
    pin = entry[0].split()[0]
    name = pin.split("==")[0]
    if norm(name) in skip:
        left_out.append(pin)
    else:
        kept.append(pin)
        lines.extend(line for line in entry if not line.lstrip().startswith("#"))
with open(lock, "w") as handle:
    handle.write("".join(lines))
print("  packaged: " + ", ".join(kept))
print("  left out: " + (", ".join(left_out) or "nothing"))
EOF

echo "installing into $OUT"
rm -rf "$OUT" "$ZIP"
mkdir -p "$OUT"
# Two steps: every locked file is checked against its hash; the wheel just built has none.
"$PYTHON" -m pip install --quiet --no-compile --no-deps --require-hashes --target "$OUT" \
  "${PIP_TARGET_FLAGS[@]}" -r "$LOCK"
rm -rf "$OUT/bin"   # console scripts (see below); the second install would warn about it
"$PYTHON" -m pip install --quiet --no-compile --no-deps --target "$OUT" "${PIP_TARGET_FLAGS[@]}" \
  "$WHEEL"

# Console scripts point at this machine's interpreter; RECORD, INSTALLER, REQUESTED and
# direct_url.json (a local path) only serve pip here. The rest of each dist-info stays, since
# importlib.metadata reads it. Test suites shipped inside packages (certifi, events) go too.
rm -rf "$OUT/bin"
find "$OUT" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$OUT" -mindepth 2 -maxdepth 2 -type d -name tests -prune -exec rm -rf {} +
find "$OUT" -path '*.dist-info/*' \( -name RECORD -o -name INSTALLER -o -name REQUESTED \
  -o -name direct_url.json \) -type f -delete

cp "$CONFIG" "$OUT/syncer.toml"

# Bytecode: /var/task is read-only, so without .pyc files every cold start compiles every module
# again (bench/RESULTS.md: about 860 against 300 ms to import the handler). unchecked-hash .pyc
# files do not depend on file timestamps, which the zip resets. Only a CPython 3.11 writes the
# bytecode that the python3.11 runtime loads.
if "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "compiling bytecode for CPython $PY_VERSION"
  "$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$OUT" >/dev/null
else
  echo "not compiling bytecode: $PYTHON is not CPython $PY_VERSION (cold starts will be slower)"
fi

# Cold-start check: run the handler from build/lambda alone (-S: none of this machine's
# site-packages) in a Lambda-like environment with an empty batch. That loads the packaged
# config with the template's environment variables and builds every client, without touching
# the network. This Python's boto3/botocore stand in for the runtime's SDK, placed after the
# package as /var/runtime is. Only where the wheels run: Linux x86_64 CPython 3.11.
if "$PYTHON" -c 'import platform, sys; sys.exit(not (sys.platform == "linux"
    and platform.machine() == "x86_64" and sys.version_info[:2] == (3, 11)))'; then
  echo "checking the package: handler cold start with the packaged config"
  mkdir -p "$WORK/runtime-sdk"
  for module in boto3 botocore s3transfer jmespath; do
    [ -e "$OUT/$module" ] && continue
    location=$("$PYTHON" -c "import $module, os; print(os.path.dirname($module.__file__))" \
      2>/dev/null) || { echo "  $PYTHON has no $module to stand in for the runtime's" >&2; exit 1; }
    ln -s "$location" "$WORK/runtime-sdk/$module"
  done
  env -i PATH="$PATH" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$OUT:$WORK/runtime-sdk" \
    AWS_LAMBDA_FUNCTION_NAME=syncer-package-check AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=check AWS_SECRET_ACCESS_KEY=check \
    SYNCER_CONFIG="$OUT/syncer.toml" SYNCER_METRICS=off \
    OPENSEARCH_URL=https://search-check.us-east-1.es.amazonaws.com:443 \
    REDIS_URL=rediss://check.cache.amazonaws.com:6379/0 \
    SYNCER_DEADLETTER_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/check \
    "$PYTHON" -S - <<'EOF'
import os
import sys

from syncer.config import load_config
from syncer.handler import lambda_handler

response = lambda_handler({"Records": []}, None)
if response != {"batchItemFailures": []}:
    sys.exit(f"unexpected handler response {response!r}")
config = load_config()
if config.deadletter.sqs_queue_url != os.environ["SYNCER_DEADLETTER_QUEUE_URL"]:
    sys.exit(
        "SYNCER_DEADLETTER_QUEUE_URL did not reach [deadletter]: dead letters would go to "
        f"{config.deadletter.file!r}, which is read-only in Lambda"
    )
print(
    f"  ok: {len(config.tables)} table(s), OpenSearch auth {config.opensearch.auth!r}, "
    "dead letters to the SQS queue"
)
EOF
else
  echo "skipping the cold-start check: this machine cannot run $PLATFORM CPython $PY_VERSION wheels"
fi

"$PYTHON" - "$OUT" "$ZIP" <<'EOF'
import os
import sys
import zipfile

root, target = sys.argv[1:]
files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
unzipped = 0
with zipfile.ZipFile(target, "w") as archive:
    for path in files:
        # Fixed timestamps and modes: the same inputs give the same zip.
        info = zipfile.ZipInfo(os.path.relpath(path, root), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as handle:
            data = handle.read()
        unzipped += len(data)
        archive.writestr(info, data, compresslevel=9)
zipped = os.path.getsize(target)
mb = 1024 * 1024  # Lambda's "250 MB" unzipped limit is 262,144,000 bytes: MiB
print(f"{root}: {len(files)} files, {unzipped / mb:.1f} MB unzipped (Lambda limit 250 MB)")
print(f"{target}: {zipped / mb:.1f} MB zipped (Lambda limit 50 MB for a direct upload)")
if unzipped >= 250 * mb or zipped >= 50 * mb:
    sys.exit("the package exceeds a Lambda size limit")
EOF
