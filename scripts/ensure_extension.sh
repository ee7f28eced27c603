#!/usr/bin/env bash
# Build the pyo3 extension `barbridge` into .venv/ unless it is already there. The sidecar writes
# the FIFO through it (barbridge.FifoWriter), so every script that starts the sidecar runs this.
#
#   scripts/ensure_extension.sh        (needs .venv/ with maturin: pip install -r requirements.txt)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$repo/.venv/bin/python"
[[ -x $py ]] || { echo "ensure_extension: $py not found; create .venv first (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)" >&2; exit 2; }
if "$py" -c 'import barbridge; barbridge.FifoWriter' 2>/dev/null; then exit 0; fi
echo "building the Python extension barbridge into .venv/ (maturin develop --release; takes a few minutes the first time)" >&2
command -v cargo >/dev/null || { echo "ensure_extension: cargo is missing; install Rust (https://rustup.rs), then rerun" >&2; exit 2; }
cd "$repo"
VIRTUAL_ENV="$repo/.venv" "$repo/.venv/bin/maturin" develop --release --locked >&2 ||
    { echo "ensure_extension: the extension build failed (see above)" >&2; exit 2; }
"$py" -c 'import barbridge; barbridge.FifoWriter' || { echo "ensure_extension: barbridge still does not import after the build" >&2; exit 2; }
