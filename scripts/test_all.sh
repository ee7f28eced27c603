#!/usr/bin/env bash
# The one command that passes all tests (Rust, Python, end-to-end), installing what it needs:
# the Python environment at .venv/ (alpaca-py, maturin, pytest, the barbridge extension) and the
# Rust build. Safe to re-run; installs only what changed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

log() { printf '\n==> %s\n' "$*"; }

command -v cargo >/dev/null || { echo "test_all: cargo not found; install Rust (rustup) first" >&2; exit 2; }
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "test_all: $python not found; install Python 3.9+ first" >&2; exit 2; }

log "Python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements.txt
    echo "$want" > "$stamp"
fi

log "nats-server (the NATS tests run a real one)"
if ! command -v nats-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
        && apt-get update -qq >/dev/null && apt-get install -y -qq nats-server >/dev/null; then
        echo "installed nats-server $(nats-server --version)"
    else
        echo "test_all: nats-server is missing and could not be installed (as root: apt-get install nats-server); the NATS tests will fail" >&2
    fi
fi

log "Rust build (release binary for the end-to-end tests)"
cargo build --release --locked --features nats --bins --examples

log "Python extension barbridge (pyo3, built by maturin into .venv)"
# maturin develop when src/, Cargo.* or pyproject.toml changed since the last build (the stamp the
# launcher checks too, so the tests below never wait for a rebuild).
scripts/ensure_extension.sh
.venv/bin/python -c "import barbridge" || { echo "test_all: the barbridge extension does not import" >&2; exit 1; }

log "Rust tests (with the NATS feature)"
cargo test --locked --features nats

log "Python and end-to-end tests"
export BARBRIDGE_BIN="$repo/target/release/barbridge"
.venv/bin/python -m pytest tests/python -q
