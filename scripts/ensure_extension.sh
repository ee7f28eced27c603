#!/usr/bin/env bash
# Build the pyo3 extension `barbridge` into .venv/ when it is missing or older than its sources.
# The sidecar writes the FIFO through it (barbridge.FifoWriter), so every script that starts the
# sidecar runs this. "Older" is decided by a stamp: a hash of src/, assets/, Cargo.toml, Cargo.lock and
# pyproject.toml, kept in .venv/.barbridge-extension.sha256 after each build.
#
#   scripts/ensure_extension.sh           (needs .venv/ with maturin: pip install -r requirements.txt)
#   scripts/ensure_extension.sh --stamp   print the current sources' stamp and exit
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$repo/.venv/bin/python"
stamp_file="$repo/.venv/.barbridge-extension.sha256"

sources_stamp() {
    (cd "$repo" && find src assets -type f -print0 | sort -z | xargs -0 sha256sum &&
        sha256sum Cargo.toml Cargo.lock pyproject.toml) | sha256sum | cut -d' ' -f1
}
want=$(sources_stamp)
if [[ ${1:-} == --stamp ]]; then echo "$want"; exit 0; fi

[[ -x $py ]] || { echo "ensure_extension: $py not found; create .venv first (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)" >&2; exit 2; }
if [[ -f $stamp_file && $(<"$stamp_file") == "$want" ]] && "$py" -c 'import barbridge; barbridge.FifoWriter' 2>/dev/null; then
    exit 0
fi
echo "building the Python extension barbridge into .venv/ (its sources changed or it is missing; maturin develop --release)" >&2
command -v cargo >/dev/null || { echo "ensure_extension: cargo is missing; install Rust (https://rustup.rs), then rerun" >&2; exit 2; }
cd "$repo"
VIRTUAL_ENV="$repo/.venv" "$repo/.venv/bin/maturin" develop --release --locked >&2 ||
    { echo "ensure_extension: the extension build failed (see above)" >&2; exit 2; }
"$py" -c 'import barbridge; barbridge.FifoWriter' || { echo "ensure_extension: barbridge still does not import after the build" >&2; exit 2; }
echo "$want" >"$stamp_file"
