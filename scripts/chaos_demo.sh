#!/usr/bin/env bash
# chaos_demo.sh — kill and restart the pieces of barbridge at random, then check that nothing was lost.
#
#   scripts/chaos_demo.sh [--duration SECS] [--seed N] [--keep]
#
# Runs, offline, the whole pipe: the fake Alpaca server (fake_alpaca/server.py, 4 data
# minutes per second, with corrections and minutes without trades) → the sidecar (alpaca-py) →
# FIFO → `barbridge run --journal DIR`. For --duration seconds (default 40) it SIGKILLs the
# consumer, the sidecar or the fake server at random every few seconds and restarts it (the
# server on the same port with the same data clock, so it serves the same history). Then it
# pauses the server's production, lets everything drain, prints `barbridge gaps` and a one-line
# verdict: does the journal hold exactly the bars the server produced (final values, corrections
# applied, nothing missing, nothing invented), and does `gaps` show only the holes the source
# itself has? Exit code 0 = yes, 1 = no, 2 = the demo could not run.
#
# The data clock sits in the most recent NYSE session before today, so `gaps` judges real session
# minutes whatever the day. Logs and the journal stay in the printed work directory when the
# verdict fails (or with --keep).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$repo/.venv/bin/python"
bin="${BARBRIDGE_BIN:-$repo/target/release/barbridge}"
duration=40
seed="$RANDOM"
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos_demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$py" ] || { echo "chaos_demo.sh: $py missing: run scripts/test_all.sh once to create .venv" >&2; exit 2; }
"$repo/scripts/ensure_extension.sh" || exit 2
if [ ! -x "$bin" ]; then
  echo "building barbridge (cargo build --release) ..."
  (cd "$repo" && cargo build --release --bin barbridge >/dev/null) || exit 2
fi
RANDOM="$seed"

work="$(mktemp -d "${TMPDIR:-/tmp}/barbridge-chaos.XXXXXX")"
fifo="$work/run/bars.fifo"
journal="$work/journal"
key="CHAOSKEY0000"
secret="CHAOSSECRET0000"
symbols="SPY,SH"
interval=0.25
server_pid=""; consumer_pid=""; sidecar_pid=""
verdict_rc=2

stop_all() {
  local pid
  for pid in "$sidecar_pid" "$consumer_pid" "$server_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "$sidecar_pid" "$consumer_pid" "$server_pid"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  stop_all
  if [ "$verdict_rc" -eq 0 ] && [ "$keep" -eq 0 ]; then
    rm -rf -- "$work"
  else
    echo "work directory kept: $work (logs *.log, journal/)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
read -r date open_ms _close_ms < <("$py" "$repo/scripts/chaos_check.py" session)
epoch_ms=$((open_ms + 30 * 60000))
epoch_wall="$(date +%s)"
export PYTHONPATH="$repo" PYTHONUNBUFFERED=1 ALPACA_API_KEY="$key" ALPACA_SECRET_KEY="$secret"
unset ALPACA_STREAM_URL ALPACA_DATA_URL ALPACA_PAPER_API_KEY ALPACA_PAPER_SECRET_KEY

# data minutes since the clock origin (4 per wall second)
data_minutes_elapsed() { echo $(( ($(date +%s) - epoch_wall) * 4 )); }

wait_for_line() {  # FILE PATTERN SECS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "chaos_demo.sh: timed out waiting for '$2' in $1" >&2
  return 1
}

n_server=0; n_consumer=0; n_sidecar=0
start_server() {  # PREFILL
  n_server=$((n_server + 1))
  (cd "$work" && exec "$py" -m fake_alpaca --port "$port" --interval "$interval" --symbols "$symbols" \
      --key "$key" --secret "$secret" --epoch-ms "$epoch_ms" --epoch-wall "$epoch_wall" --prefill "$1" \
      --updated-every 3 --no-trade-prob 0.1) >"$work/server$n_server.log" 2>&1 &
  server_pid=$!
  wait_for_line "$work/server$n_server.log" FAKE_ALPACA_DATA_URL= 30
}
start_consumer() {
  n_consumer=$((n_consumer + 1))
  (cd "$work" && exec "$bin" run --fifo "$fifo" --journal "$journal" --status-file "$work/status.json") \
      >/dev/null 2>"$work/consumer$n_consumer.log" &
  consumer_pid=$!
}
start_sidecar() {
  n_sidecar=$((n_sidecar + 1))
  (cd "$work" && exec "$py" -m bridge --fifo "$fifo" --symbols "$symbols" \
      --stream-url "ws://127.0.0.1:$port/v2/iex" --data-url "http://127.0.0.1:$port" --backfill-from "$backfill_from" \
      --market-hours always --no-preflight --reconnect-min 0.2 --reconnect-max 1 --heartbeat 1 --stats-interval 5) \
      >/dev/null 2>"$work/sidecar$n_sidecar.log" &
  sidecar_pid=$!
}
kill9() {  # PID
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

echo "chaos demo: seed $seed, ${duration}s, data session $date (NYSE), fake server on port $port, work dir $work"
start_server 10
first_ms="$("$py" "$repo/scripts/chaos_check.py" first-minute --data-url "http://127.0.0.1:$port" --symbols "$symbols")"
# every sidecar (re)start backfills from the first minute the first server ever published
backfill_from="$("$py" -c 'import sys, datetime as d; print(d.datetime.fromtimestamp(int(sys.argv[1]) / 1000, d.timezone.utc).isoformat())' "$first_ms")"
start_consumer
start_sidecar
wait_for_line "$work/sidecar1.log" "status subscribed" 30

end=$((SECONDS + duration))
while [ "$SECONDS" -lt "$end" ]; do
  sleep "$((2 + RANDOM % 4)).$((RANDOM % 10))"
  victim=$((RANDOM % 3))
  outage="$((RANDOM % 3)).$((RANDOM % 10))"
  case "$victim" in
    0) echo "  t=${SECONDS}s kill -9 consumer (pid $consumer_pid), back in ${outage}s"
       kill9 "$consumer_pid"; sleep "$outage"; start_consumer ;;
    1) echo "  t=${SECONDS}s kill -9 sidecar (pid $sidecar_pid), back in ${outage}s"
       kill9 "$sidecar_pid"; sleep "$outage"; start_sidecar ;;
    2) echo "  t=${SECONDS}s kill -9 fake server (pid $server_pid), back in ${outage}s"
       kill9 "$server_pid"; sleep "$outage"
       # same port and data clock; its history reaches back past the first server's first minute
       start_server "$(( $(data_minutes_elapsed) + 10 + 20 ))" ;;
  esac
done

echo "stopping the server's production; draining ..."
"$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' \
  "http://127.0.0.1:$port/_fake/fault?action=pause"
echo "restarts: server $((n_server - 1)), consumer $((n_consumer - 1)), sidecar $((n_sidecar - 1))"
set +e
"$py" "$repo/scripts/chaos_check.py" verdict --journal "$journal" --data-url "http://127.0.0.1:$port" \
  --symbols "$symbols" --since-ms "$first_ms" --date "$date" --barbridge "$bin" --wait 30 >"$work/verdict.txt"
verdict_rc=$?
set -e
echo
"$bin" gaps --journal "$journal" --date "$date"
echo
cat "$work/verdict.txt"
exit "$verdict_rc"
