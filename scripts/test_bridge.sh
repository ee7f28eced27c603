#!/usr/bin/env bash
# Standalone end-to-end check of the whole pipe, offline (a one-screen verdict):
#   fake Alpaca server (python -m fake_alpaca) → sidecar (alpaca-py, --source alpaca)
#   → private FIFO → Rust consumer (barbridge run --echo)
# It streams a deterministic set of bars for 4 symbols, injects disconnects (a TCP drop and a
# close 1011), then checks that every bar the server produced reached the consumer exactly once
# with its final values, and prints a one-screen report (sent, received, duplicates, reconnects,
# latency p50/p99). Exit 0 = pass, 1 = fail, 2 = could not run.
#
#   scripts/test_bridge.sh [--minutes N] [--interval SECS] [--keep]
# Env: BARBRIDGE_BIN (consumer binary), PYTHON (default .venv/bin/python).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=${PYTHON:-$REPO/.venv/bin/python}
BIN=${BARBRIDGE_BIN:-$REPO/target/release/barbridge}
SYMBOLS=SPY,SPXL,SH,SDS
MINUTES=24
INTERVAL=0.25
KEEP=0
while (($#)); do
    case $1 in
        --minutes) MINUTES=${2:?}; shift ;;
        --interval) INTERVAL=${2:?}; shift ;;
        --keep) KEEP=1 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "test_bridge: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if ! [[ $MINUTES =~ ^[0-9]+$ ]] || ((MINUTES < 8)); then echo "test_bridge: --minutes must be a whole number >= 8" >&2; exit 2; fi
[[ -x $PY ]] || { echo "test_bridge: $PY not found; create the venv (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)" >&2; exit 2; }
"$REPO/scripts/ensure_extension.sh" || exit 2
if [[ ! -x $BIN ]]; then
    echo "test_bridge: building the consumer (cargo build --release --bin barbridge)" >&2
    cargo build --release --bin barbridge --manifest-path "$REPO/Cargo.toml" >&2 || { echo "test_bridge: build failed" >&2; exit 2; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/test_bridge.XXXXXX")
chmod 700 "$WORK"
FIFO="$WORK/run/bars.fifo"
KEY="PKFAKE$RANDOM$RANDOM""TESTKEY"
SECRET="fake-secret-$RANDOM$RANDOM-value"
SERVER_PID="" CONSUMER_PID="" SIDECAR_PID="" STAMP_PID=""

# shellcheck disable=SC2317  # stop and cleanup run from the EXIT trap
stop() { # stop PID: TERM, up to 5 s, then KILL; reap
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317
cleanup() {
    local rc=$?
    trap '' INT TERM
    stop "$SIDECAR_PID"
    stop "$CONSUMER_PID"
    if [[ -f $WORK/stamp.pid ]]; then STAMP_PID=$(<"$WORK/stamp.pid"); fi
    stop "$STAMP_PID"
    stop "$SERVER_PID"
    if ((KEEP)) || ((rc != 0)); then echo "test_bridge: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "test_bridge: FAIL: $*" >&2; for f in server.err sidecar.err consumer.err; do echo "--- $f" >&2; tail -n 15 "$WORK/$f" >&2 || true; done; exit 1; }
wait_for() { # wait_for SECONDS WHAT COMMAND...
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do "$@" && return 0; sleep 0.1; done
    fail "timed out after ${secs}s waiting for $what"
}

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PREFILL=5
# The data clock starts in the past and stays behind the wall clock (a consumer refuses bars from
# the future): the fake's own default origin, with the wall time it counts from.
EPOCH_WALL=$(date +%s)
EPOCH_MS=$("$PY" -c 'import sys; from fake_alpaca.server import default_epoch_ms as d; print(d(sys.argv[1].split(","), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))' \
    "$SYMBOLS" "$INTERVAL" "$PREFILL" "$EPOCH_WALL")
(cd "$WORK" && exec "$PY" -m fake_alpaca --port 0 --interval "$INTERVAL" --symbols "$SYMBOLS" \
    --key "$KEY" --secret "$SECRET" --seed 7 --epoch-ms "$EPOCH_MS" --epoch-wall "$EPOCH_WALL" --prefill "$PREFILL" --updated-every 5) >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
wait_for 20 "the fake server's URL" grep -q '^FAKE_ALPACA_DATA_URL=' "$WORK/server.out"
STREAM_URL=$(sed -n 's/^FAKE_ALPACA_STREAM_URL=//p' "$WORK/server.out")
DATA_URL=$(sed -n 's/^FAKE_ALPACA_DATA_URL=//p' "$WORK/server.out")
DISCONNECTS=2

RUST_LOG=info "$BIN" run --fifo "$FIFO" --echo --status-file "$WORK/status.json" --stale-after 30 \
    > >(exec "$PY" "$REPO/scripts/bridge_check.py" stamp "$WORK/echo.tsv" "$WORK/stamp.pid") 2>"$WORK/consumer.err" &
CONSUMER_PID=$!
wait_for 15 "the consumer's FIFO" test -p "$FIFO"

env -u ALPACA_PAPER_API_KEY -u ALPACA_PAPER_SECRET_KEY -u APCA_API_KEY_ID -u APCA_API_SECRET_KEY \
    ALPACA_API_KEY="$KEY" ALPACA_SECRET_KEY="$SECRET" \
    "$PY" -m bridge --source alpaca --fifo "$FIFO" --symbols "$SYMBOLS" --stream-url "$STREAM_URL" --data-url "$DATA_URL" \
    --config /dev/null --market-hours always --stale-after 5 --heartbeat 0.5 --stats-interval 0.5 \
    --reconnect-min 0.2 --reconnect-max 0.5 --ping-interval 2 --ping-timeout 4 >"$WORK/sidecar.out" 2>"$WORK/sidecar.err" &
SIDECAR_PID=$!
wait_for 30 "the sidecar to subscribe" grep -q 'status subscribed' "$WORK/sidecar.err"
# shellcheck disable=SC2317  # called through wait_for
connects() { [[ $(grep -c 'status connected' "$WORK/sidecar.err") -ge $1 ]]; }
check=("$PY" "$REPO/scripts/bridge_check.py")
# live stream, then a TCP reset, then a close 1011: each must end in a reconnect and a backfill
third=$((MINUTES / 3))
"${check[@]}" wait-minutes "$DATA_URL" "$third" 60 || fail "the server stalled"
"${check[@]}" fault "$DATA_URL" drop >/dev/null
wait_for 30 "the sidecar to reconnect after a TCP drop" connects 2
"${check[@]}" wait-minutes "$DATA_URL" "$third" 60 || fail "the server stalled"
"${check[@]}" fault "$DATA_URL" close1011 >/dev/null
wait_for 30 "the sidecar to reconnect after close 1011" connects 3
"${check[@]}" wait-minutes "$DATA_URL" "$((MINUTES - 2 * third))" 60 || fail "the server stalled"
kill -0 "$SIDECAR_PID" 2>/dev/null || fail "the sidecar died"
kill -0 "$CONSUMER_PID" 2>/dev/null || fail "the consumer died"

rc=0
"${check[@]}" report "$DATA_URL" "$KEY" "$SECRET" "$SYMBOLS" "$EPOCH_MS" "$INTERVAL" \
    "$WORK/echo.tsv" "$WORK/sidecar.err" "$WORK/status.json" "$DISCONNECTS" "$PREFILL" "$EPOCH_WALL" || rc=$?
stop "$SIDECAR_PID"
SIDECAR_PID=""
# the secret must never appear in any output
for f in sidecar.err sidecar.out consumer.err server.err; do
    if grep -q -F -- "$SECRET" "$WORK/$f"; then echo "FAIL: the secret appeared in $f" >&2; rc=1; fi
done
exit "$rc"
