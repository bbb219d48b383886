#!/usr/bin/env bash
# The whole floe test suite, on a fresh machine: formatting and lints, Rust unit and integration
# tests, then the interop tests that read floe's tables back with pyiceberg and DuckDB from a
# Python venv this script creates (packages from PyPI, pinned in tests/interop/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="$(realpath -m "${FLOE_VENV:-.venv}")"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating Python venv $VENV"
  python3 -m venv "$VENV"
fi
echo "== installing reference readers (pyiceberg, DuckDB)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== cargo doc (the library's docs link only to what they show)"
RUSTDOCFLAGS="-D warnings" cargo doc -p floe --no-deps --quiet
echo "== interop tests (pyiceberg, DuckDB)"
cargo build -p floe-cli
echo "== the floe Python package (maturin develop into $VENV, reusing target/debug)"
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --quiet -m crates/floe-py/Cargo.toml
FLOE_BIN="$PWD/target/debug/floe" "$VENV/bin/python" -m pytest tests/interop -q
