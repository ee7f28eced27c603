#!/usr/bin/env bash
# barbridge launcher: the one command that runs the market-data bridge.
#
#   scripts/launch_live_trading.sh            # no credentials in config.env → offline demo
#   scripts/launch_live_trading.sh --demo     # offline demo even with credentials
#   scripts/launch_live_trading.sh --live     # live Alpaca feed (credentials required)
#   scripts/launch_live_trading.sh --check    # preflight only
#   scripts/launch_live_trading.sh --status   # status of the running launcher
#   scripts/launch_live_trading.sh --help     # every option and setting
#
# This wrapper only prepares the environment: the Python environment .venv/ (created, or updated
# when requirements.txt changed), the Python extension and the Rust consumer (each rebuilt when
# its sources changed; a no-op when fresh). Then it hands over to the supervisor,
# `python -m bridge.supervisor` (bridge/supervisor/), which does everything else.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"

log() { printf '%s [launch_live_trading] %s\n' "$(date +%Y-%m-%dT%H:%M:%S%z)" "$*" >&2; }
die() { log "error: $1 Fix: $2"; exit 2; }

prepare=1
for arg in "$@"; do
    case $arg in -h | --help | --status | --check | --subscribe | --subscribe=* | --unsubscribe | --unsubscribe=*) prepare=0 ;; esac
done

ensure_venv() {
    local stamp="$REPO/.venv/.requirements.sha256" want sys_py=${PYTHON:-python3}
    want=$(sha256sum "$REPO/requirements.txt" | cut -d' ' -f1)
    if [[ -x $PY && -f $stamp && $(<"$stamp") == "$want" ]]; then return 0; fi
    if [[ -x $PY ]] && "$PY" -c 'import alpaca, exchange_calendars, msgpack, websockets, certifi' 2>/dev/null; then
        return 0
    fi
    command -v "$sys_py" >/dev/null || die "python3 is not installed." "install Python 3.10+ (e.g. apt-get install python3 python3-venv)."
    log "first start: creating the Python environment .venv/ (pip install -r requirements.txt; about 30 s), then building the extension and the consumer (a few minutes on 2 cores; later starts reuse both)"
    if [[ ! -x $PY ]]; then
        "$sys_py" -m venv "$REPO/.venv" || die "cannot create .venv/ with $sys_py -m venv." "install python3-venv, then rerun."
    fi
    "$PY" -m pip install --progress-bar off -r "$REPO/requirements.txt" | { grep -E '^(Collecting|Successfully)' >&2 || true; } ||
        die "pip install -r requirements.txt failed (see above)." "check network access to PyPI, then rerun."
    echo "$want" >"$stamp"
}

ensure_consumer() { # cargo decides whether anything changed (a no-op when fresh)
    if [[ -n ${BARBRIDGE_BIN:-} ]]; then
        [[ -x $BARBRIDGE_BIN ]] || die "BARBRIDGE_BIN=$BARBRIDGE_BIN is not an executable." "unset BARBRIDGE_BIN or build it."
        return 0
    fi
    local bin="$REPO/target/release/barbridge"
    if ! command -v cargo >/dev/null; then
        [[ -x $bin ]] || die "the consumer is not built and cargo is missing." "install Rust (https://rustup.rs), then rerun."
        log "warning: cargo is missing, so $bin may be older than its sources"
        return 0
    fi
    [[ -x $bin ]] || log "building the Rust consumer (cargo build --release --bin barbridge; about a minute: it reuses the extension's dependencies)"
    cargo build --release --locked --features nats --bin barbridge --manifest-path "$REPO/Cargo.toml" ||
        die "cargo build failed (see above)." "fix the build error, then rerun."
}

if ((prepare)); then
    ensure_venv
    "$REPO/scripts/ensure_extension.sh" ||
        die "the Python extension barbridge could not be built (see above)." "fix the build error, then rerun."
    ensure_consumer
elif [[ ! -x $PY ]]; then
    # --help needs only the standard library; --check, --status and --(un)subscribe need the environment
    case " $* " in *" -h "* | *" --help "*) PY=${PYTHON:-python3} ;; *)
        die "the Python environment .venv/ is missing." "run scripts/launch_live_trading.sh once (it creates it)." ;;
    esac
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" -m bridge.supervisor "$@"
