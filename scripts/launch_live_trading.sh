#!/usr/bin/env bash
# barbridge launcher: the one command that runs the market-data bridge.
#
#   scripts/launch_live_trading.sh            # no credentials in config.env → offline demo
#   scripts/launch_live_trading.sh --demo     # offline demo even with credentials
#   scripts/launch_live_trading.sh --live     # live Alpaca feed (credentials required)
#   scripts/launch_live_trading.sh --check    # preflight only
#   scripts/launch_live_trading.sh --status   # status of the running launcher
#
# It loads config.env (--config FILE / BARBRIDGE_CONFIG), validates it, builds the Rust consumer
# and creates .venv/ only if missing, prepares a private FIFO, starts the consumer and then the
# sidecar, and supervises both (backoff restarts, stale feed → sidecar restart, flap and give-up
# alerts, market-day schedule). Ctrl-C / SIGTERM stop the sidecar, then the consumer, and remove
# the FIFO and pid files. Secrets are only ever shown masked (****WXYZ).
# Exit: 0 clean stop (signal, market close, no session today), 1 runtime failure or give-up,
# 2 configuration or preflight error.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROG="launch_live_trading"

usage() {
    cat <<'EOF'
Usage: scripts/launch_live_trading.sh [options]

Modes (default: live if credentials are configured, otherwise demo):
  --demo              offline pipeline with a synthetic feed (no network, no credentials)
  --live              live Alpaca feed; credentials required
  --check             run the preflight checks and exit (0 = all good)
  --status            print the running consumer's status and the supervisor's restart counts

Options (each also settable in config.env / the environment, shown in brackets):
  --config FILE       configuration file [BARBRIDGE_CONFIG, default: <repo>/config.env]
  --symbols LIST      comma-separated symbols [SYMBOLS, default SPY,SPXL,SH,SDS]
  --run-dir DIR       where dated run directories go [RUNS_DIR, default <repo>/runs]
  --interval SECS     demo: wall seconds per synthetic minute bar [DEMO_INTERVAL, default 1]
  --schedule          follow the market-day schedule [SCHEDULE, default: on live, off demo]
  --no-schedule       run until stopped, whatever the time
  --wait-open         wait until OPEN_TIME before starting [WAIT_FOR_OPEN, default 1]
  --no-wait-open      start now even before the open
  --open HH:MM        start time, New York [OPEN_TIME, default 09:30]
  --eod HH:MM         end-of-day hook time, New York [EOD_TIME, default 15:58; runs EOD_CMD]
  --close HH:MM       shutdown time, New York [CLOSE_TIME, default 16:00; early closes win]
  --warmup            fetch recent minute bars over REST into the consumer first [WARMUP, live]
  --no-warmup
  --quiet             no per-bar lines on the terminal (status screens and events only)
  -h, --help

Supervision settings (environment/config.env; seconds may be fractional):
  STALE_AFTER=60 consumer's "no line at all" threshold → restart the sidecar
  SIDECAR_STALE_AFTER=90 sidecar's own "no bar in session" reconnect threshold
  BACKOFF_MIN=1 BACKOFF_MAX=60 restart backoff; MAX_RESTARTS=10 consecutive failures → give up
  STABLE_AFTER=60 uptime that resets the backoff; FLAP_THRESHOLD=3 FLAP_WINDOW=600
  STATUS_EVERY=10 (demo) / 60 (live) status screen period, 0 = off; TICK=1 supervision period
  ALERT_CMD='cmd' run via bash -c with the one-line JSON payload as $1 and on stdin
  HEARTBEAT=5 sidecar heartbeat; BARBRIDGE_RUNTIME_DIR private dir for FIFO and pid files
EOF
}

# ---------------------------------------------------------------- small helpers
ts_now() { printf '%(%Y-%m-%dT%H:%M:%S%z)T' -1; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
SUP_LOG=""
log() {
    local line
    line="$(ts_now) [$PROG] $*"
    printf '%s\n' "$line" >&2
    if [[ -n $SUP_LOG ]]; then printf '%s\n' "$line" >>"$SUP_LOG" 2>/dev/null || true; fi
}
die() { # die CODE "sentence" ["fix"]
    local code=$1
    shift
    log "error: $1${2:+ Fix: $2}"
    exit "$code"
}
mask() { local s=${1:-}; if ((${#s} > 4)); then printf '****%s' "${s: -4}"; else printf '****'; fi; }

# secs_to_ms NAME VALUE → echo milliseconds, or die with a clear sentence
secs_to_ms() {
    local name=$1 v=$2
    if [[ $v =~ ^([0-9]+)(\.([0-9]*))?$ ]]; then
        local frac="${BASH_REMATCH[3]}000"
        echo $((10#${BASH_REMATCH[1]} * 1000 + 10#${frac:0:3}))
    else
        die 2 "$name=$v is not a number of seconds." "set $name to e.g. 5 or 0.5."
    fi
}
check_int() { [[ $2 =~ ^[0-9]+$ ]] || die 2 "$1=$2 is not a whole number." "set $1 to e.g. 10."; }
check_hhmm() {
    [[ $2 =~ ^([01]?[0-9]|2[0-3]):[0-5][0-9]$ ]] || die 2 "$1=$2 is not a HH:MM time (24-hour, New York)." "use e.g. $1=15:58."
}
is_true() { case "${1,,}" in 1 | true | yes | on) return 0 ;; *) return 1 ;; esac; }

# Run a helper in the background and wait for it, so a signal is handled at once and the
# helper is killed by the EXIT trap instead of being left behind.
FG_PID=""
run_fg() {
    local rc=0
    "$@" &
    FG_PID=$!
    wait "$FG_PID" || rc=$?
    FG_PID=""
    if ((STOP_REQUESTED)); then exit 0; fi
    return "$rc"
}

# Interruptible sleep (a trapped signal ends it immediately).
SLEEP_PID=""
nap() {
    sleep "$1" &
    SLEEP_PID=$!
    wait "$SLEEP_PID" 2>/dev/null || true
    kill "$SLEEP_PID" 2>/dev/null || true
    SLEEP_PID=""
}

# ---------------------------------------------------------------- config file
# KEY=value / export KEY=value lines; quotes stripped; no shell code is executed. Values already
# in the environment win (so `SYMBOLS=SPY scripts/launch_live_trading.sh` works).
load_config() {
    local file=$1 line key val n=0
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
            key=${BASH_REMATCH[2]}
            val=${BASH_REMATCH[3]}
            if [[ $val =~ ^\"(.*)\"[[:space:]]*(#.*)?$ ]] || [[ $val =~ ^\'(.*)\'[[:space:]]*(#.*)?$ ]]; then
                val=${BASH_REMATCH[1]}
            else
                val=${val%%[[:space:]]#*}
                val=${val%"${val##*[![:space:]]}"}
            fi
            case $key in
                PATH | HOME | USER | SHELL | IFS | LD_* | BASH_* | PS4) die 2 "$file:$n sets $key, which config.env may not change." "remove that line." ;;
            esac
            if [[ -z ${!key+x} ]]; then export "$key=$val"; fi
        else
            die 2 "$file:$n is not a KEY=value line." "fix or comment out that line (see config.env.example)."
        fi
    done <"$file"
}

# ---------------------------------------------------------------- arguments
MODE="" ACTION="run" CONFIG_ARG="" QUIET=0
declare -A OPT=()
while (($#)); do
    case $1 in
        --demo) MODE=demo ;;
        --live) MODE=live ;;
        --check) ACTION=check ;;
        --status) ACTION=status ;;
        --config) CONFIG_ARG=${2:?--config needs a file}; shift ;;
        --symbols) OPT[SYMBOLS]=${2:?--symbols needs a list}; shift ;;
        --run-dir) OPT[RUNS_DIR]=${2:?--run-dir needs a directory}; shift ;;
        --interval) OPT[DEMO_INTERVAL]=${2:?--interval needs seconds}; shift ;;
        --schedule) OPT[SCHEDULE]=1 ;;
        --no-schedule) OPT[SCHEDULE]=0 ;;
        --wait-open) OPT[WAIT_FOR_OPEN]=1 ;;
        --no-wait-open) OPT[WAIT_FOR_OPEN]=0 ;;
        --open) OPT[OPEN_TIME]=${2:?--open needs HH:MM}; shift ;;
        --eod) OPT[EOD_TIME]=${2:?--eod needs HH:MM}; shift ;;
        --close) OPT[CLOSE_TIME]=${2:?--close needs HH:MM}; shift ;;
        --warmup) OPT[WARMUP]=1 ;;
        --no-warmup) OPT[WARMUP]=0 ;;
        --quiet) QUIET=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die 2 "unknown option $1." "see --help." ;;
    esac
    shift
done
for k in "${!OPT[@]}"; do export "$k=${OPT[$k]}"; done

CONFIG_FILE=${CONFIG_ARG:-${BARBRIDGE_CONFIG:-$REPO/config.env}}
[[ $CONFIG_FILE == /* ]] || CONFIG_FILE="$PWD/$CONFIG_FILE" # the sidecar runs from the repo root
if [[ -f $CONFIG_FILE ]]; then
    [[ -r $CONFIG_FILE ]] || die 2 "config file $CONFIG_FILE is not readable." "check its permissions."
    load_config "$CONFIG_FILE"
    if [[ -n $(find "$CONFIG_FILE" -maxdepth 0 -perm /077 2>/dev/null) ]]; then
        log "warning: $CONFIG_FILE is readable by other users and may hold API keys. Fix: chmod 600 $CONFIG_FILE."
    fi
elif [[ -n $CONFIG_ARG || -n ${BARBRIDGE_CONFIG:-} ]]; then
    die 2 "config file $CONFIG_FILE does not exist." "create it from config.env.example or drop --config."
fi

# credentials: same variable pairs as the sidecar (bridge/config.py)
API_KEY="" SECRET_KEY=""
for pair in ALPACA_API_KEY:ALPACA_SECRET_KEY ALPACA_PAPER_API_KEY:ALPACA_PAPER_SECRET_KEY APCA_API_KEY_ID:APCA_API_SECRET_KEY; do
    kv=${pair%%:*} sv=${pair##*:}
    if [[ -n ${!kv:-} && -n ${!sv:-} ]]; then API_KEY=${!kv} SECRET_KEY=${!sv}; break; fi
    if [[ -n ${!kv:-} || -n ${!sv:-} ]]; then PARTIAL_CREDS="$kv/$sv"; fi
done
if [[ -z $MODE ]]; then
    if [[ -n $API_KEY ]]; then MODE=live; elif [[ -n ${PARTIAL_CREDS:-} ]]; then MODE=live; else MODE=demo; fi
fi
if [[ $MODE == live && -z $API_KEY ]]; then
    if [[ -n ${PARTIAL_CREDS:-} ]]; then
        die 2 "live mode needs both halves of $PARTIAL_CREDS and one is missing." "set both in $CONFIG_FILE, or run with --demo."
    fi
    die 2 "live mode needs Alpaca credentials and none are configured." "set ALPACA_API_KEY and ALPACA_SECRET_KEY in $CONFIG_FILE (see config.env.example), or run with --demo."
fi

# ---------------------------------------------------------------- settings and validation
SYMBOLS=${SYMBOLS:-SPY,SPXL,SH,SDS}
SYMBOLS=${SYMBOLS// /}
SYMBOLS=${SYMBOLS^^}
[[ $SYMBOLS =~ ^[A-Z0-9.^/-]+(,[A-Z0-9.^/-]+)*$ ]] || die 2 "SYMBOLS=$SYMBOLS is not a comma-separated list of tickers." "use e.g. SYMBOLS=SPY,SH."
RUNS_DIR=${RUNS_DIR:-$REPO/runs}
[[ $RUNS_DIR == /* ]] || RUNS_DIR="$PWD/$RUNS_DIR"
ALPACA_FEED=${ALPACA_FEED:-iex}
[[ $ALPACA_FEED == iex || $ALPACA_FEED == sip ]] || die 2 "ALPACA_FEED=$ALPACA_FEED must be iex or sip." "set ALPACA_FEED=iex."
if [[ $MODE == live ]]; then def_sched=1 def_status=60; else def_sched=0 def_status=10; fi
SCHEDULE=${SCHEDULE:-$def_sched}
WAIT_FOR_OPEN=${WAIT_FOR_OPEN:-1}
WARMUP=${WARMUP:-0}
OPEN_TIME=${OPEN_TIME:-09:30} EOD_TIME=${EOD_TIME:-15:58} CLOSE_TIME=${CLOSE_TIME:-16:00}
check_hhmm OPEN_TIME "$OPEN_TIME"
check_hhmm EOD_TIME "$EOD_TIME"
check_hhmm CLOSE_TIME "$CLOSE_TIME"
DEMO_INTERVAL=${DEMO_INTERVAL:-1}
secs_to_ms DEMO_INTERVAL "$DEMO_INTERVAL" >/dev/null
((10#$(secs_to_ms DEMO_INTERVAL "$DEMO_INTERVAL") > 0)) || die 2 "DEMO_INTERVAL must be more than 0 seconds." "use e.g. --interval 1."
STALE_AFTER=${STALE_AFTER:-60}
SIDECAR_STALE_AFTER=${SIDECAR_STALE_AFTER:-90}
HEARTBEAT=${HEARTBEAT:-5}
TICK=${TICK:-1}
STATUS_EVERY=${STATUS_EVERY:-$def_status}
ALERT_TIMEOUT=${ALERT_TIMEOUT:-10}
STOP_TIMEOUT=${STOP_TIMEOUT:-8}
STALE_AFTER_MS=$(secs_to_ms STALE_AFTER "$STALE_AFTER")
((STALE_AFTER_MS > 0)) || die 2 "STALE_AFTER must be more than 0 seconds." "use e.g. STALE_AFTER=60."
secs_to_ms SIDECAR_STALE_AFTER "$SIDECAR_STALE_AFTER" >/dev/null
secs_to_ms HEARTBEAT "$HEARTBEAT" >/dev/null
TICK_MS=$(secs_to_ms TICK "$TICK")
((TICK_MS > 0)) || die 2 "TICK must be more than 0 seconds." "use e.g. TICK=1."
STATUS_EVERY_MS=$(secs_to_ms STATUS_EVERY "$STATUS_EVERY")
BACKOFF_MIN_MS=$(secs_to_ms BACKOFF_MIN "${BACKOFF_MIN:-1}")
BACKOFF_MAX_MS=$(secs_to_ms BACKOFF_MAX "${BACKOFF_MAX:-60}")
STABLE_AFTER_MS=$(secs_to_ms STABLE_AFTER "${STABLE_AFTER:-60}")
FLAP_WINDOW_MS=$(secs_to_ms FLAP_WINDOW "${FLAP_WINDOW:-600}")
STOP_TIMEOUT_MS=$(secs_to_ms STOP_TIMEOUT "$STOP_TIMEOUT")
secs_to_ms ALERT_TIMEOUT "$ALERT_TIMEOUT" >/dev/null
STALE_GRACE_MS=$(secs_to_ms STALE_GRACE "${STALE_GRACE:-$STALE_AFTER}")
HUNG_AFTER_MS=$(secs_to_ms CONSUMER_HUNG_AFTER "${CONSUMER_HUNG_AFTER:-30}")
MAX_RESTARTS=${MAX_RESTARTS:-10}
FLAP_THRESHOLD=${FLAP_THRESHOLD:-3}
check_int MAX_RESTARTS "$MAX_RESTARTS"
check_int FLAP_THRESHOLD "$FLAP_THRESHOLD"
for v in SCHEDULE WAIT_FOR_OPEN WARMUP; do
    case "${!v,,}" in 0 | 1 | true | false | yes | no | on | off) ;; *) die 2 "$v=${!v} must be 1 or 0." "set $v=1 or $v=0." ;; esac
done

RT=${BARBRIDGE_RUNTIME_DIR:-${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/barbridge}}
RT=${RT:-/tmp/barbridge-$(id -u)}
FIFO="$RT/bars.fifo"
STATUS_FILE="$RT/status.json"
STATE_LINK="$RT/launcher.env"
PY="$REPO/.venv/bin/python"
BIN=${BARBRIDGE_BIN:-$REPO/target/release/barbridge}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# ---------------------------------------------------------------- --status
if [[ $ACTION == status ]]; then
    if [[ ! -f $STATE_LINK ]]; then
        echo "barbridge launcher: not running (no $STATE_LINK)."
        exit 1
    fi
    run_dir=$(sed -n 's/^RUN_DIR=//p' "$STATE_LINK")
    lpid=$(sed -n 's/^LAUNCHER_PID=//p' "$STATE_LINK")
    if ! kill -0 "$lpid" 2>/dev/null; then echo "barbridge launcher: pid $lpid is not running (stale $STATE_LINK)."; fi
    "$BIN" status --status-file "$STATUS_FILE" || true
    echo
    if [[ -f $run_dir/supervisor.json ]]; then
        echo "supervisor (launcher pid $lpid, run dir $run_dir):"
        cat "$run_dir/supervisor.json"
    fi
    kill -0 "$lpid" 2>/dev/null
    exit $?
fi

# ---------------------------------------------------------------- environment: venv and binary
ensure_venv() {
    local stamp="$REPO/.venv/.requirements.sha256" want
    want=$(sha256sum "$REPO/requirements.txt" | cut -d' ' -f1)
    if [[ -x $PY && -f $stamp && $(<"$stamp") == "$want" ]]; then return 0; fi
    if [[ -x $PY ]] && "$PY" -c 'import alpaca, exchange_calendars, msgpack, websockets, certifi' 2>/dev/null; then
        return 0
    fi
    local sys_py=${PYTHON:-python3}
    command -v "$sys_py" >/dev/null || die 2 "python3 is not installed." "install Python 3.9+ (e.g. apt-get install python3 python3-venv)."
    log "first run: creating the Python environment .venv/ (pip install -r requirements.txt; takes a minute)"
    if [[ ! -x $PY ]]; then
        run_fg "$sys_py" -m venv "$REPO/.venv" || die 2 "cannot create .venv/ with $sys_py -m venv." "install python3-venv, then rerun."
    fi
    run_fg "$PY" -m pip install --quiet -r "$REPO/requirements.txt" ||
        die 2 "pip install -r requirements.txt failed (see above)." "check network access to PyPI, then rerun."
    echo "$want" >"$stamp"
}
ensure_extension() { # the sidecar writes the FIFO through barbridge.FifoWriter
    run_fg "$REPO/scripts/ensure_extension.sh" || die 2 "the Python extension barbridge could not be built (see above)." "fix the build error, then rerun."
}
ensure_binary() {
    if [[ -x $BIN ]]; then return 0; fi
    if [[ -n ${BARBRIDGE_BIN:-} ]]; then die 2 "BARBRIDGE_BIN=$BIN is not an executable." "unset BARBRIDGE_BIN or build it."; fi
    command -v cargo >/dev/null || die 2 "the consumer is not built and cargo is missing." "install Rust (https://rustup.rs), then rerun."
    log "first run: building the Rust consumer (cargo build --release --bin barbridge; takes a few minutes)"
    run_fg cargo build --release --bin barbridge --manifest-path "$REPO/Cargo.toml" || die 2 "cargo build failed (see above)." "fix the build error, then rerun."
}

STOP_REQUESTED=0 STOP_SIGNAL=""
on_signal() { STOP_REQUESTED=1; STOP_SIGNAL=$1; }
RUN_DIR="" RT_OWNED=0
CONSUMER_PID="" SIDECAR_PID=""
CLEANED=0
stop_child() { # stop_child NAME PID: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; reap
    local name=$1 pid=$2 deadline
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true
        deadline=$(($(now_ms) + STOP_TIMEOUT_MS))
        while kill -0 "$pid" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.05; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    ((CLEANED)) && return
    CLEANED=1
    trap '' INT TERM HUP
    if [[ -n $FG_PID ]]; then kill -TERM "$FG_PID" 2>/dev/null || true; wait "$FG_PID" 2>/dev/null || true; fi
    if [[ -n $SLEEP_PID ]]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
    if [[ -n $SIDECAR_PID ]]; then log "stopping the sidecar (pid $SIDECAR_PID)"; stop_child sidecar "$SIDECAR_PID"; fi
    if [[ -n $CONSUMER_PID ]]; then log "stopping the consumer (pid $CONSUMER_PID; it flushes its journal)"; stop_child consumer "$CONSUMER_PID"; fi
    if ((RT_OWNED)) && [[ $(cat "$RT/launcher.pid" 2>/dev/null) == "$$" ]]; then
        rm -f "$FIFO" "$RT/consumer.pid" "$RT/sidecar.pid" "$RT/launcher.pid" "$STATE_LINK" "$STATUS_FILE"
        rmdir "$RT" 2>/dev/null || true
    fi
    if [[ -n $RUN_DIR ]] && declare -F write_state >/dev/null; then write_state 2>/dev/null || true; fi
    if [[ -n $RUN_DIR ]]; then log "stopped (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

preflight() {
    echo "preflight ($MODE mode):"
    if [[ -x $PY ]]; then echo "  ok    python: $("$PY" -c 'import sys; print(sys.version.split()[0])') in .venv/"; fi
    if [[ -x $BIN ]]; then echo "  ok    consumer: $BIN"; fi
    run_fg "$PY" -m bridge.preflight --mode "$MODE" --fifo "$FIFO" --feed "$ALPACA_FEED"
}

if [[ $ACTION == check ]]; then
    [[ -x $PY ]] || die 2 "the Python environment .venv/ is missing." "run scripts/launch_live_trading.sh once (it creates it) or python3 -m venv .venv && .venv/bin/pip install -r requirements.txt."
    [[ -x $BIN ]] || die 2 "the consumer $BIN is not built." "run cargo build --release --bin barbridge."
    "$PY" -c 'import barbridge; barbridge.FifoWriter' 2>/dev/null || die 2 "the Python extension barbridge (the sidecar's FIFO writer) is not built." "run scripts/ensure_extension.sh."
    if preflight; then echo "preflight: all checks passed"; exit 0; fi
    exit 2
fi

ensure_venv
ensure_extension
ensure_binary

# ---------------------------------------------------------------- run directory, single instance
TZ=America/New_York printf -v TODAY '%(%Y-%m-%d)T' -1
RUN_DIR="$RUNS_DIR/$TODAY"
mkdir -p "$RUN_DIR" 2>/dev/null || die 2 "cannot create the run directory $RUN_DIR." "choose a writable place with --run-dir DIR (or RUNS_DIR)."
if ! { touch "$RUN_DIR/.write-test" && rm -f "$RUN_DIR/.write-test"; } 2>/dev/null; then
    die 2 "the run directory $RUN_DIR is not writable." "choose a writable place with --run-dir DIR (or RUNS_DIR)."
fi
SUP_LOG="$RUN_DIR/launcher.log"
CONSUMER_LOG="$RUN_DIR/consumer.log"
SIDECAR_LOG="$RUN_DIR/sidecar.log"
BARS_FILE="$RUN_DIR/bars.jsonl"
if [[ $MODE == live ]]; then JOURNAL_DIR="$RUNS_DIR/journal"; else JOURNAL_DIR="$RUN_DIR/demo-journal"; fi

if [[ -e $RT && ! -d $RT ]]; then die 2 "$RT exists and is not a directory." "remove it or set BARBRIDGE_RUNTIME_DIR."; fi
mkdir -p "$RT" 2>/dev/null || die 2 "cannot create the runtime directory $RT." "set BARBRIDGE_RUNTIME_DIR to a directory you own."
chmod 700 "$RT"
if [[ -f $RT/launcher.pid ]]; then
    other=$(<"$RT/launcher.pid")
    if [[ $other =~ ^[0-9]+$ ]] && kill -0 "$other" 2>/dev/null && [[ $other != "$$" ]]; then
        die 2 "another launcher (pid $other) is already running on $RT." "stop it first, or set BARBRIDGE_RUNTIME_DIR for a second instance."
    fi
fi

echo $$ >"$RT/launcher.pid"
RT_OWNED=1
printf 'LAUNCHER_PID=%s\nRUN_DIR=%s\nMODE=%s\nSTATUS_FILE=%s\n' "$$" "$RUN_DIR" "$MODE" "$STATUS_FILE" >"$STATE_LINK"

log "barbridge launcher: $MODE mode, symbols $SYMBOLS, run dir $RUN_DIR, FIFO $FIFO"
if [[ $MODE == live ]]; then log "credentials: key $(mask "$API_KEY"), secret $(mask "$SECRET_KEY")"; fi
if [[ -z $API_KEY && $MODE == demo ]]; then
    log "no Alpaca credentials (none in the environment or $CONFIG_FILE): running the offline DEMO (synthetic bars). For live data: cp config.env.example config.env and fill in your Alpaca keys."
fi
if ! preflight >>"$SUP_LOG" 2>&1; then
    grep 'FAIL' "$SUP_LOG" | tail -1 >&2 || true
    die 2 "preflight failed (details above; full list in $SUP_LOG)." "fix it, then check with scripts/launch_live_trading.sh --check."
fi

# ---------------------------------------------------------------- alerts and state
ALERTS=0
alert() { # alert EVENT PROCESS MESSAGE
    local event=$1 proc=$2 msg=$3 payload
    msg=${msg//\\/\\\\}
    msg=${msg//\"/\\\"}
    payload=$(printf '{"event":"%s","process":"%s","message":"%s","mode":"%s","ts":"%s","restarts":{"consumer":%d,"sidecar":%d},"run_dir":"%s"}' \
        "$event" "$proc" "$msg" "$MODE" "$(ts_now)" "$CONSUMER_RESTARTS" "$SIDECAR_RESTARTS" "$RUN_DIR")
    ALERTS=$((ALERTS + 1))
    log "ALERT $payload"
    if [[ -n ${ALERT_CMD:-} ]]; then
        timeout "$ALERT_TIMEOUT" bash -c "$ALERT_CMD" alert "$payload" <<<"$payload" >>"$SUP_LOG" 2>&1 ||
            log "error: ALERT_CMD failed or timed out (exit $?)"
    fi
}
CONSUMER_RESTARTS=0 SIDECAR_RESTARTS=0 STALE_RESTARTS=0 FLAPS=0
write_state() {
    local tmp="$RUN_DIR/supervisor.json.tmp"
    printf '{"launcher_pid":%d,"mode":"%s","symbols":"%s","updated":"%s",\n "consumer":{"pid":"%s","restarts":%d,"consecutive_failures":%d},\n "sidecar":{"pid":"%s","restarts":%d,"stale_restarts":%d,"consecutive_failures":%d},\n "flap_alerts":%d,"alerts":%d,"gave_up":%s}\n' \
        "$$" "$MODE" "$SYMBOLS" "$(ts_now)" "$CONSUMER_PID" "$CONSUMER_RESTARTS" "${FAILS[consumer]:-0}" \
        "$SIDECAR_PID" "$SIDECAR_RESTARTS" "$STALE_RESTARTS" "${FAILS[sidecar]:-0}" "$FLAPS" "$ALERTS" "${GAVE_UP:-false}" >"$tmp"
    mv -f "$tmp" "$RUN_DIR/supervisor.json"
}
declare -A FAILS=([consumer]=0 [sidecar]=0) STARTED=([consumer]=0 [sidecar]=0) RESTART_AT=([consumer]=0 [sidecar]=0)
RESTART_TIMES=()

# ---------------------------------------------------------------- schedule
EOD_DONE=0 OPEN_EPOCH=0 EOD_EPOCH=0 CLOSE_EPOCH=0
if is_true "$SCHEDULE"; then
    # SCHEDULE_NOW (ISO time) is for tests only: it decides today's phase; waits still use the clock
    sched=$("$PY" -m bridge.schedule --open "$OPEN_TIME" --eod "$EOD_TIME" --close "$CLOSE_TIME" ${SCHEDULE_NOW:+--now "$SCHEDULE_NOW"} 2>&1) ||
        die 2 "${sched##*error: }" "fix OPEN_TIME/EOD_TIME/CLOSE_TIME in $CONFIG_FILE."
    while IFS='=' read -r k v; do
        case $k in SESSION_DATE | TRADING_DAY | EARLY_CLOSE | OPEN_EPOCH | EOD_EPOCH | CLOSE_EPOCH | PHASE | NEXT_SESSION | OPEN_NY | EOD_NY | CLOSE_NY) printf -v "$k" '%s' "$v" ;; esac
    done <<<"$sched"
    if ((TRADING_DAY == 0)); then
        log "today ($SESSION_DATE, New York) is not a NYSE trading day (weekend or holiday); next session $NEXT_SESSION. Nothing to do."
        exit 0
    fi
    if [[ $PHASE == after_close ]]; then
        log "the session of $SESSION_DATE is over (close $CLOSE_NY New York); next session $NEXT_SESSION. Nothing to do."
        exit 0
    fi
    log "session $SESSION_DATE: start $OPEN_NY, EOD hook $EOD_NY, shutdown $CLOSE_NY New York$( ((EARLY_CLOSE)) && echo ' (early close)')"
    if [[ $PHASE == before_open ]] && is_true "$WAIT_FOR_OPEN"; then
        log "waiting for $OPEN_NY New York ($((OPEN_EPOCH - EPOCHSECONDS)) s)"
        while ((EPOCHSECONDS < OPEN_EPOCH)); do
            nap "$((OPEN_EPOCH - EPOCHSECONDS > 30 ? 30 : OPEN_EPOCH - EPOCHSECONDS))"
            ((STOP_REQUESTED)) && exit 0
        done
    fi
fi

# ---------------------------------------------------------------- children
start_consumer() {
    local sym_args=(--symbols "$SYMBOLS")
    RUST_LOG=${RUST_LOG:-info} "$BIN" run --fifo "$FIFO" --status-file "$STATUS_FILE" --journal "$JOURNAL_DIR" \
        --stale-after "$STALE_AFTER" --echo "${sym_args[@]}" >>"$BARS_FILE" 2>>"$CONSUMER_LOG" </dev/null &
    CONSUMER_PID=$!
    echo "$CONSUMER_PID" >"$RT/consumer.pid"
    STARTED[consumer]=$(now_ms)
    log "consumer started (pid $CONSUMER_PID; log $CONSUMER_LOG)"
}
last_bar_ms() { # newest bar time the consumer holds: its status file and latest echoed bars (0 if none)
    local m=0 v
    if [[ -f $STATUS_FILE ]]; then
        while read -r v; do if ((v > m)); then m=$v; fi; done < <(grep -o '"last_bar_ts_ms": *[0-9]*' "$STATUS_FILE" | grep -o '[0-9]*$')
    fi
    while read -r v; do if ((v > m)); then m=$v; fi; done < <(tail -n 16 "$BARS_FILE" 2>/dev/null | sed -n 's/.*"timestamp_ms":\([0-9]*\).*/\1/p')
    echo "$m"
}
start_sidecar() {
    local args=(--fifo "$FIFO" --symbols "$SYMBOLS" --heartbeat "$HEARTBEAT" --stats-interval 60)
    if [[ -f $CONFIG_FILE ]]; then args+=(--config "$CONFIG_FILE"); fi
    if [[ $MODE == demo ]]; then
        args+=(--source synthetic --interval "$DEMO_INTERVAL")
        local last start
        last=$(last_bar_ms)
        if ((last > 0)); then # continue after the last bar the consumer holds (no repeated minutes)
            start=$((last + 60000))
            args+=(--start-ms "$start")
        fi
    else
        args+=(--source alpaca --feed "$ALPACA_FEED" --stale-after "$SIDECAR_STALE_AFTER" --no-preflight)
    fi
    (cd "$REPO" && exec "$PY" -m bridge "${args[@]}") >>"$SIDECAR_LOG" 2>&1 </dev/null &
    SIDECAR_PID=$!
    echo "$SIDECAR_PID" >"$RT/sidecar.pid"
    STARTED[sidecar]=$(now_ms)
    log "sidecar started (pid $SIDECAR_PID, source $([[ $MODE == demo ]] && echo synthetic || echo "alpaca $ALPACA_FEED"); log $SIDECAR_LOG)"
}

# wait until the consumer has its FIFO (or died: a config error it printed)
start_consumer
deadline=$(($(now_ms) + 15000))
until [[ -p $FIFO ]]; do
    if ! kill -0 "$CONSUMER_PID" 2>/dev/null; then
        rc=0
        wait "$CONSUMER_PID" || rc=$?
        CONSUMER_PID=""
        die 2 "the consumer exited at start (exit $rc): $(tail -n 1 "$CONSUMER_LOG")" "see $CONSUMER_LOG."
    fi
    (($(now_ms) < deadline)) || die 1 "the consumer did not create $FIFO within 15 s." "see $CONSUMER_LOG."
    nap 0.05
    ((STOP_REQUESTED)) && exit 0
done

# ---------------------------------------------------------------- warm-up (optional, live)
if is_true "$WARMUP"; then
    if [[ $MODE == live ]]; then
        log "warm-up: fetching ${WARMUP_DAYS:-20} sessions of minute bars over REST into the consumer"
        if run_fg "$PY" -m bridge.warmup --symbols "$SYMBOLS" --days "${WARMUP_DAYS:-20}" --out "$RUN_DIR/warmup.jsonl" >>"$SUP_LOG" 2>&1 &&
            run_fg "$PY" -m bridge --source replay --replay-file "$RUN_DIR/warmup.jsonl" --fifo "$FIFO" --symbols "$SYMBOLS" \
                --stats-interval 0 >>"$SIDECAR_LOG" 2>&1; then
            log "warm-up: bars from $RUN_DIR/warmup.jsonl delivered to the consumer"
        else
            log "error: warm-up failed (see $SUP_LOG); continuing without it"
        fi
    else
        log "warm-up skipped in demo mode"
    fi
fi
start_sidecar
write_state

# ---------------------------------------------------------------- supervision
backoff_ms() { # delay before restart number $1 (1-based) of consecutive failures
    local n=$1 d=$BACKOFF_MIN_MS
    while ((n > 1 && d < BACKOFF_MAX_MS)); do d=$((d * 2)); n=$((n - 1)); done
    ((d > BACKOFF_MAX_MS)) && d=$BACKOFF_MAX_MS
    echo "$d"
}
note_restart() { # flap detection over all restarts
    local now t kept=()
    now=$(now_ms)
    RESTART_TIMES+=("$now")
    for t in "${RESTART_TIMES[@]}"; do ((now - t <= FLAP_WINDOW_MS)) && kept+=("$t"); done
    RESTART_TIMES=("${kept[@]}")
    if ((${#RESTART_TIMES[@]} > FLAP_THRESHOLD)); then
        if ((!FLAPPING)); then
            FLAPPING=1
            FLAPS=$((FLAPS + 1))
            alert flap "$1" "${#RESTART_TIMES[@]} restarts within $((FLAP_WINDOW_MS / 1000)) s: the pipeline is flapping"
        fi
    else
        FLAPPING=0
    fi
}
FLAPPING=0
GAVE_UP=false
give_up() { # give_up PROCESS SENTENCE
    GAVE_UP=true
    alert give_up "$1" "$2"
    write_state
    die 1 "$2" "see $RUN_DIR/$1.log; fix the cause and rerun."
}
# A child exited on its own: schedule its restart (backoff) or give up.
on_exit() { # on_exit NAME RC PID
    local name=$1 rc=$2 pid=$3 up_ms now why
    now=$(now_ms)
    up_ms=$((now - STARTED[$name]))
    if ((up_ms >= STABLE_AFTER_MS)); then FAILS[$name]=0; fi
    FAILS[$name]=$((FAILS[$name] + 1))
    if [[ $name == sidecar ]]; then why=$(grep -a 'error:' "$SIDECAR_LOG" | tail -n 1 || true); else why=$(tail -n 1 "$CONSUMER_LOG" || true); fi
    why=${why:-no error message}
    case "$name:$rc" in
        sidecar:2 | sidecar:3 | sidecar:4 | consumer:2)
            give_up "$name" "the $name stopped with exit $rc, a configuration/credential error that restarting cannot fix: ${why##*error: }"
            ;;
    esac
    if ((FAILS[$name] > MAX_RESTARTS)); then
        give_up "$name" "the $name failed $((FAILS[$name])) times in a row (last exit $rc after $((up_ms / 1000)) s; MAX_RESTARTS=$MAX_RESTARTS): giving up. Last message: $why"
    fi
    local delay
    delay=$(backoff_ms "${FAILS[$name]}")
    RESTART_AT[$name]=$((now + delay))
    log "error: the $name (pid $pid) exited with code $rc after $((up_ms / 1000)) s; restart #$((FAILS[$name])) in $((delay / 1000)).$(((delay % 1000) / 100)) s"
}
check_child() { # check_child NAME PIDVAR
    local name=$1 var=$2 pid rc=0
    pid=${!var}
    if [[ -z $pid ]]; then
        if ((RESTART_AT[$name] > 0 && $(now_ms) >= RESTART_AT[$name])); then
            RESTART_AT[$name]=0
            if [[ $name == consumer ]]; then CONSUMER_RESTARTS=$((CONSUMER_RESTARTS + 1)); start_consumer; else SIDECAR_RESTARTS=$((SIDECAR_RESTARTS + 1)); start_sidecar; fi
            alert restart "$name" "the $name was restarted (restart #$((FAILS[$name])) in a row)"
            note_restart "$name"
            write_state
        fi
        return 0
    fi
    kill -0 "$pid" 2>/dev/null && return 0
    wait "$pid" || rc=$?
    printf -v "$var" '%s' ""
    rm -f "$RT/$name.pid"
    on_exit "$name" "$rc" "$pid"
    write_state
}
restart_sidecar_now() { # restart_sidecar_now REASON
    log "error: $1: restarting the sidecar (pid $SIDECAR_PID)"
    alert stale sidecar "$1"
    stop_child sidecar "$SIDECAR_PID"
    SIDECAR_PID=""
    SIDECAR_RESTARTS=$((SIDECAR_RESTARTS + 1))
    STALE_RESTARTS=$((STALE_RESTARTS + 1))
    start_sidecar
    alert restart sidecar "the sidecar was restarted because the feed was stale"
    note_restart sidecar
    write_state
}
check_health() {
    [[ -n $CONSUMER_PID && -f $STATUS_FILE ]] || return 0
    local now state="" updated="" text
    now=$(now_ms)
    text=$(<"$STATUS_FILE") || return 0 # compact or pretty JSON; health.state is the first field of health
    if [[ $text =~ \"health\":[[:space:]]*\{[^{}]*\"state\":[[:space:]]*\"([a-z_]+)\" ]]; then state=${BASH_REMATCH[1]}; fi
    if [[ $text =~ \"updated_ms\":[[:space:]]*([0-9]+) ]]; then updated=${BASH_REMATCH[1]}; fi
    if [[ -n $updated ]] && ((now - updated > HUNG_AFTER_MS && now - STARTED[consumer] > HUNG_AFTER_MS)); then
        log "error: the consumer's status file was last written $(((now - updated) / 1000)) s ago: the consumer is hung; restarting it"
        alert stale consumer "consumer status not updated for $(((now - updated) / 1000)) s (hung)"
        stop_child consumer "$CONSUMER_PID"
        CONSUMER_PID=""
        FAILS[consumer]=$((FAILS[consumer] + 1))
        RESTART_AT[consumer]=$now
        return 0
    fi
    if [[ $state == stale && -n $SIDECAR_PID ]] && ((now - STARTED[sidecar] >= STALE_GRACE_MS)); then
        restart_sidecar_now "the consumer reports the feed stale (nothing received for ${STALE_AFTER} s)"
    fi
}

# terminal display: one line per bar minute, from the consumer's --echo output
BARS_SEEN=0 BAR_PARTIAL="" BARS_FD=""
exec {BARS_FD}<"$BARS_FILE"
# start at the end: earlier runs of today appended to the same file
while IFS= read -r _ <&"$BARS_FD"; do :; done
show_bars() {
    local line group="" gts="" ts sym close n=0 cell
    while true; do
        line=""
        if ! IFS= read -r line <&"$BARS_FD"; then
            BAR_PARTIAL+=$line
            break
        fi
        line=$BAR_PARTIAL$line
        BAR_PARTIAL=""
        [[ $line =~ \"symbol\":\"([^\"]+)\" ]] || continue
        sym=${BASH_REMATCH[1]}
        [[ $line =~ \"timestamp_ms\":([0-9]+) ]] || continue
        ts=${BASH_REMATCH[1]}
        [[ $line =~ \"close\":([-0-9.eE+]+) ]] && close=${BASH_REMATCH[1]} || close="?"
        BARS_SEEN=$((BARS_SEEN + 1))
        n=$((n + 1))
        if [[ $ts != "$gts" && -n $group ]]; then
            ((QUIET)) || TZ=America/New_York printf '%(%Y-%m-%d %H:%M)T NY %s\n' "$((gts / 1000))" "$group"
            group=""
        fi
        gts=$ts
        printf -v cell '  %-5s %9s' "$sym" "$close"
        group+=$cell
        [[ $line == *updated_bar* ]] && group+="(upd)"
    done
    if [[ -n $group ]]; then
        ((QUIET)) || TZ=America/New_York printf '%(%Y-%m-%d %H:%M)T NY %s   [%d bars received]\n' "$((gts / 1000))" "$group" "$BARS_SEEN"
    fi
}
show_status() {
    echo "---------------------------------------------------------------- status $(ts_now)"
    "$BIN" status --status-file "$STATUS_FILE" 2>&1 || true
    echo "supervisor: consumer restarts $CONSUMER_RESTARTS, sidecar restarts $SIDECAR_RESTARTS ($STALE_RESTARTS for a stale feed), flap alerts $FLAPS   (Ctrl-C to stop; logs in $RUN_DIR)"
    echo "----------------------------------------------------------------"
}

if [[ $MODE == demo ]]; then
    log "DEMO: bars below are synthetic, $DEMO_INTERVAL s per minute bar; status every ${STATUS_EVERY}s; Ctrl-C to stop"
fi
NEXT_STATUS=$(($(now_ms) + (STATUS_EVERY_MS < 3000 ? STATUS_EVERY_MS : 3000)))
while true; do
    if ((STOP_REQUESTED)); then
        log "${STOP_SIGNAL:-signal} received: shutting down"
        exit 0
    fi
    if is_true "$SCHEDULE"; then
        if ((!EOD_DONE && EPOCHSECONDS >= EOD_EPOCH)); then
            EOD_DONE=1
            log "EOD: $EOD_NY New York reached${EOD_CMD:+, running EOD_CMD}"
            if [[ -n ${EOD_CMD:-} ]]; then
                run_fg timeout 120 bash -c "$EOD_CMD" >>"$SUP_LOG" 2>&1 || log "error: EOD_CMD failed (exit $?)"
            fi
        fi
        if ((EPOCHSECONDS >= CLOSE_EPOCH)); then
            log "market close ($CLOSE_NY New York): shutting down"
            exit 0
        fi
    fi
    check_child consumer CONSUMER_PID
    check_child sidecar SIDECAR_PID
    check_health
    show_bars
    if ((STATUS_EVERY_MS > 0 && $(now_ms) >= NEXT_STATUS)); then
        NEXT_STATUS=$(($(now_ms) + STATUS_EVERY_MS))
        show_status
        write_state
    fi
    nap "$TICK"
done
