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
command -v "$python" >/dev/null || { echo "test_all: $python not found; install Python 3.10+ first" >&2; exit 2; }

log "Python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# requirements.txt's stamp is the launcher's too; the development tools have their own.
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
dev_stamp=.venv/.requirements-dev.sha256
dev_want="$(sha256sum requirements-dev.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -f "$dev_stamp" ] || [ "$(cat "$dev_stamp")" != "$dev_want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    echo "$want" > "$stamp"
    echo "$dev_want" > "$dev_stamp"
fi

log "NautilusTrader (the optional extra nautilus: tests/python/test_nautilus.py)"
if ! .venv/bin/python -c "import nautilus_trader" 2>/dev/null; then
    if .venv/bin/python -m pip install --quiet -r requirements-nautilus.txt; then
        echo "installed $(.venv/bin/python -m pip show nautilus_trader 2>/dev/null | grep -m1 '^Version') of nautilus_trader"
    else
        echo "test_all: cannot install NautilusTrader (requirements-nautilus.txt); tests/python/test_nautilus.py is skipped" >&2
    fi
fi

log "System tools for the monitoring and TLS tests (promtool, prometheus, chromium, systemd-analyze, openssl, ip, unshare)"
# Debian packages; installed when missing and we are root, else the tests that need them skip
# with the reason.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)  # a font for the page's screenshot
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v openssl >/dev/null || missing+=(openssl)  # the NATS TLS tests make their certificates
command -v ip >/dev/null || missing+=(iproute2)  # the several-hosts NATS test: network namespaces, veth, bridge
command -v unshare >/dev/null || missing+=(util-linux)  # ...and each host's own hostname and pids
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null &&
        apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        echo "installed ${missing[*]}"
    else
        echo "test_all: cannot install ${missing[*]} (needs root and apt-get); the tests that use them are skipped" >&2
    fi
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

log "Lints: rustfmt, clippy (all features), ruff, mypy (shellcheck runs in the Python tests)"
cargo fmt --check
cargo clippy --locked --all-targets --features nats -- -D warnings
PYO3_PYTHON="$repo/.venv/bin/python" cargo clippy --locked --lib --features python,nats -- -D warnings
.venv/bin/ruff check bridge fake_alpaca tests/python scripts examples/nautilus
.venv/bin/mypy  # files and settings: pyproject.toml [tool.mypy]

log "Rust tests (with the NATS feature; the bindings' own tests in an embedded interpreter)"
cargo test --locked --features nats
PYO3_PYTHON="$repo/.venv/bin/python" cargo test --locked --features python,nats --lib -- python::

log "Python and end-to-end tests"
export BARBRIDGE_BIN="$repo/target/release/barbridge"
.venv/bin/python -m pytest tests/python -q
