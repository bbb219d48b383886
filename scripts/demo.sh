#!/usr/bin/env bash
# Builds floe and runs a real load of the shipped sample data (demo/data) into the embedded
# default catalog under demo/out/warehouse: an append, a rerun with the same load id (a no-op),
# and an atomic replace. If the test venv exists, pyiceberg reads the result back.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p floe-cli
FLOE="$PWD/target/release/floe"
OUT="$PWD/demo/out"
rm -rf "$OUT" && mkdir -p "$OUT"
cd "$OUT"

echo "== append every sample file (creates demo.events)"
"$FLOE" load demo.events ../data/ --load-id demo-1
echo "== the same load id again: nothing is duplicated"
"$FLOE" load demo.events ../data/ --load-id demo-1
echo "== replace the table with one file, JSON summary"
"$FLOE" load demo.events ../data/part-00000.parquet --mode replace --json

if [ -x ../../.venv/bin/python ]; then
  echo "== pyiceberg reads the table"
  ../../.venv/bin/python - <<'PY'
from pyiceberg.catalog.sql import SqlCatalog
import os
wh = os.path.abspath("warehouse")
t = SqlCatalog("default", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}").load_table("demo.events")
print(f"{t.scan().to_arrow().num_rows} rows; snapshots: {[s.summary.operation.value for s in t.snapshots()]}")
PY
fi
echo "== done: the table lives in demo/out/warehouse (catalog.db + demo/events/)"
