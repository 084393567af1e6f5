#!/usr/bin/env bash
# Run the same `rampart bench` scenarios against Mosquitto, rumqttd and Rampart, one server at a time
# on loopback, and write bench/results/<date>.md with the raw JSON in bench/results/<date>/.
#
# Usage: scripts/bench-compare.sh [options]
#   --smoke            quick check of the harness: 200 connections, 3 s hold, 20 devices x 3 s ingest,
#                      50 commands; results go to <date>-smoke.md / <date>-smoke/
#   --servers LIST     comma-separated subset of mosquitto,rumqttd,rampart (default: all three)
#   --scenarios LIST   comma-separated subset of connect,connect-tls,connect-mtls,connect-noise,ingest,command
#                      (default: all; connect-mtls presents a client certificate per connection and runs
#                      against Mosquitto and Rampart; connect-noise, Rampart's secure-session layer, runs
#                      against Rampart only)
#   --out DIR          results directory (default: bench/results in the repository)
#   --report-only      do not run anything: rebuild the markdown from the JSON already in the
#                      results directory of BENCH_DATE (default today)
#   --no-install       do not install missing tools (fail instead)
#   -h, --help         this text
#
# Environment (defaults in brackets; --smoke lowers them unless they are set):
#   CONNECTIONS [18000] connections of the connect scenarios; COMMAND_DEVICES [CONNECTIONS]
#   CONNECT_RATE [1000] connections started per second; HOLD_SECS [60] idle hold after the ramp
#   KEEPALIVE_SECS [30] MQTT keepalive (idle connections ping at this interval)
#   SOURCE_IPS [8] loopback source addresses; PROCESSES [1] generator processes
#   INGEST_DEVICES [1000] INGEST_RATE [20000] INGEST_SECS [20] INGEST_QOS [1] PAYLOAD_BYTES [64]
#   COMMANDS [2000] COMMAND_RATE [200]; MQTT_VERSION [3] (3 or 5)
#   TIMEOUT_SECS [900] generator --timeout-secs (the run is also killed 120 s after it)
#   SETTLE_SECS [10] pause after stopping a server; NOFILE [20000] open-file limit of every process
#   PORT_BASE [21800] first of the ports used (mosquitto +0/+1/+2, rumqttd +10..+13, rampart +20..+22)
#   RAMPART_BIN, RUMQTTD_BIN, MOSQUITTO_BIN: use these binaries (RAMPART_BIN skips the build)
#   BENCH_DATE [today] date in the result names; KEEP_WORK=1 keeps the temporary directory
#
# Every server runs with a fresh process per scenario (so one scenario's memory does not carry into
# the next), under `ulimit -n $NOFILE`, with logging off; everything started here is stopped on exit.
# The system Mosquitto on 127.0.0.1:1883 is never touched. See bench/README.md.

# Backticks and $ in single quotes are meant literally here (markdown, recorded command lines).
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_SERVERS=(mosquitto rumqttd rampart)
ALL_SCENARIOS=(connect connect-tls connect-mtls connect-noise ingest command)

usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}
log() { printf '[bench-compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---- options ----

SMOKE=0
REPORT_ONLY=0
INSTALL=1
SERVERS_ARG=mosquitto,rumqttd,rampart
SCENARIOS_ARG=connect,connect-tls,connect-mtls,connect-noise,ingest,command
OUT=$ROOT/bench/results
ORIG_ARGS=("$@")
while (($#)); do
    case $1 in
    --smoke) SMOKE=1 ;;
    --report-only) REPORT_ONLY=1 ;;
    --no-install) INSTALL=0 ;;
    --servers | --scenarios | --out)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
        --servers) SERVERS_ARG=$2 ;;
        --scenarios) SCENARIOS_ARG=$2 ;;
        --out) OUT=$2 ;;
        esac
        shift
        ;;
    --servers=*) SERVERS_ARG=${1#*=} ;;
    --scenarios=*) SCENARIOS_ARG=${1#*=} ;;
    --out=*) OUT=${1#*=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

# `in_list WORD a b c`: true when WORD is one of the rest.
in_list() {
    local w=$1 x
    shift
    for x in "$@"; do [[ $x == "$w" ]] && return 0; done
    return 1
}

IFS=, read -r -a SERVERS <<<"$SERVERS_ARG"
IFS=, read -r -a SCENARIOS <<<"$SCENARIOS_ARG"
for s in "${SERVERS[@]}"; do in_list "$s" "${ALL_SERVERS[@]}" || die "unknown server: $s"; done
for s in "${SCENARIOS[@]}"; do in_list "$s" "${ALL_SCENARIOS[@]}" || die "unknown scenario: $s"; done

if ((SMOKE)); then
    D_CONN=200 D_RATE=500 D_HOLD=3 D_KA=30 D_SRC=2 D_IDEV=20 D_IRATE=200 D_ISECS=3 D_CMDS=50
    D_CMDRATE=50 D_TIMEOUT=180 D_SETTLE=1 SUFFIX=-smoke
else
    D_CONN=18000 D_RATE=1000 D_HOLD=60 D_KA=30 D_SRC=8 D_IDEV=1000 D_IRATE=20000 D_ISECS=20 D_CMDS=2000
    D_CMDRATE=200 D_TIMEOUT=900 D_SETTLE=10 SUFFIX=
fi
CONNECTIONS=${CONNECTIONS:-$D_CONN}
CONNECT_RATE=${CONNECT_RATE:-$D_RATE}
HOLD_SECS=${HOLD_SECS:-$D_HOLD}
KEEPALIVE_SECS=${KEEPALIVE_SECS:-$D_KA}
SOURCE_IPS=${SOURCE_IPS:-$D_SRC}
PROCESSES=${PROCESSES:-1}
INGEST_DEVICES=${INGEST_DEVICES:-$D_IDEV}
INGEST_RATE=${INGEST_RATE:-$D_IRATE}
INGEST_SECS=${INGEST_SECS:-$D_ISECS}
INGEST_QOS=${INGEST_QOS:-1}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-64}
COMMANDS=${COMMANDS:-$D_CMDS}
COMMAND_RATE=${COMMAND_RATE:-$D_CMDRATE}
COMMAND_DEVICES=${COMMAND_DEVICES:-$CONNECTIONS}
MQTT_VERSION=${MQTT_VERSION:-3}
TIMEOUT_SECS=${TIMEOUT_SECS:-$D_TIMEOUT}
SETTLE_SECS=${SETTLE_SECS:-$D_SETTLE}
NOFILE=${NOFILE:-20000}
PORT_BASE=${PORT_BASE:-21800}
BENCH_DATE=${BENCH_DATE:-$(date +%F)}
case $MQTT_VERSION in 3 | 5) ;; *) die "MQTT_VERSION must be 3 or 5" ;; esac

NAME=$BENCH_DATE$SUFFIX
RAW=$OUT/$NAME
MD=$OUT/$NAME.md

P_MOSQ=$PORT_BASE P_MOSQ_TLS=$((PORT_BASE + 1)) P_MOSQ_MTLS=$((PORT_BASE + 2))
P_RUMQ4=$((PORT_BASE + 10)) P_RUMQ4_TLS=$((PORT_BASE + 11))
P_RUMQ5=$((PORT_BASE + 12)) P_RUMQ5_TLS=$((PORT_BASE + 13))
P_RAMP=$((PORT_BASE + 20)) P_RAMP_TLS=$((PORT_BASE + 21)) P_RAMP_HTTP=$((PORT_BASE + 22))

# Rampart reads every RAMPART_* variable as configuration and refuses unknown ones (such as our
# RAMPART_BIN): keep them all out of the environment of the processes started here.
while read -r v; do export -n "${v?}"; done < <(compgen -e | grep '^RAMPART_' || true)

# ---- report ----

# `jnum FILE FILTER`: the number FILTER selects in FILE, or nothing (missing file, bad JSON, null).
jnum() {
    [[ -s $1 ]] || return 0
    jq -r "($2) | if type == \"string\" then (tonumber? // empty) else numbers end" "$1" 2>/dev/null |
        head -n 1 || true
}

# `fmt NUMBER`: a number for a table cell; empty gives a dash.
fmt() {
    if [[ -z ${1:-} ]]; then
        printf '—'
        return
    fi
    awk -v x="$1" 'BEGIN {
        a = x < 0 ? -x : x
        if (a == int(a) || a >= 1000) printf "%.0f", x
        else if (a >= 10) printf "%.1f", x
        else printf "%.3g", x
    }'
}

# `ratio A B`: A/B as "1.23×", a dash when either is missing or B is zero.
ratio() {
    if [[ -z ${1:-} || -z ${2:-} ]]; then
        printf '—'
        return
    fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) printf "—"; else printf "%.2f×", a / b }'
}

# `row LABEL SCENARIO FILTER BETTER`: one table row over the three servers.
row() {
    local label=$1 scen=$2 filter=$3 better=$4 s
    local -A val=()
    for s in "${ALL_SERVERS[@]}"; do val[$s]=$(jnum "$RAW/$s-$scen.json" "$filter"); done
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
        "$(fmt "${val[mosquitto]}")" "$(fmt "${val[rumqttd]}")" "$(fmt "${val[rampart]}")" \
        "$(ratio "${val[rampart]}" "${val[mosquitto]}")" "$(ratio "${val[rampart]}" "${val[rumqttd]}")" "$better"
}

table_head() {
    printf '| %s | Mosquitto | rumqttd | Rampart | Rampart/Mosquitto | Rampart/rumqttd | better |\n' "$1"
    printf '|---|---:|---:|---:|---:|---:|:---:|\n'
}

# `meta KEY`: a field of meta.json, or a dash.
meta() {
    local v=
    [[ -s $RAW/meta.json ]] && v=$(jq -r "$1 // empty | tostring" "$RAW/meta.json" 2>/dev/null || true)
    printf '%s' "${v:-—}"
}

write_report() {
    local tmp=$MD.tmp s scen f fmt_s
    mkdir -p "$OUT"
    {
        printf '# Broker comparison, %s%s\n\n' "$BENCH_DATE" "${SUFFIX:+ (smoke run: checks the harness, not a measurement)}"
        printf 'Generated by `scripts/bench-compare.sh` from the JSON reports in [`%s/`](%s/). ' "$NAME" "$NAME"
        printf 'Each figure comes from one run of `rampart bench` against one server, alone on the machine, '
        printf 'on loopback, each scenario on a freshly started server process. A dash means the figure is '
        printf 'missing (the run failed, was skipped, or the server does not report it). Ratios are '
        printf 'Rampart divided by the other server: below 1 is better where lower is better (↓), above 1 where '
        printf 'higher is better (↑).\n\n'

        printf '## Idle connections\n\n'
        printf 'Scenario `connect`: %s connections opened at up to %s/s, then held idle %s s (keepalive %s s). ' \
            "$(meta .params.connections)" "$(meta .params.connect_rate)" "$(meta .params.hold_secs)" "$(meta .params.keepalive_secs)"
        printf 'Server RSS and CPU are read from /proc of the server process; kernel slab is system-wide '
        printf '(socket buffers and TCP state of both ends are included).\n\n'
        table_head 'figure'
        row 'Connections established, plain' connect '.connect.ok' '↑'
        row 'Connections established, TLS' connect-tls '.connect.ok' '↑'
        row 'Memory (RSS) per idle connection, plain, KiB' connect '.server.rss_per_conn_kib' '↓'
        row 'Memory (RSS) per idle connection, TLS, KiB' connect-tls '.server.rss_per_conn_kib' '↓'
        row 'Memory (RSS) per idle connection, mutual TLS (no rumqttd), KiB' connect-mtls '.server.rss_per_conn_kib' '↓'
        row 'Memory (RSS) per idle connection, Noise (Rampart only), KiB' connect-noise '.server.rss_per_conn_kib' '↓'
        row 'Kernel slab per connection, plain, KiB' connect '.server.slab_per_conn_kib' '↓'
        row 'Kernel slab per connection, TLS, KiB' connect-tls '.server.slab_per_conn_kib' '↓'
        row 'Server RSS with all connections held, plain, MiB' connect '.server.rss_after_kib / 1024' '↓'
        row 'Server RSS with all connections held, TLS, MiB' connect-tls '.server.rss_after_kib / 1024' '↓'
        row 'Server RSS with all connections held, mutual TLS, MiB' connect-mtls '.server.rss_after_kib / 1024' '↓'
        row 'CPU per idle connection, plain, ms per minute' connect '.server.cpu_per_conn_per_min_ms' '↓'
        row 'CPU per idle connection, TLS, ms per minute' connect-tls '.server.cpu_per_conn_per_min_ms' '↓'
        printf '\n## Connecting\n\n'
        printf 'Same runs. The generator paces new connections at the rate above, so the connect rate is capped '
        printf 'by it; latency is TCP connect (+ TLS handshake) to CONNACK.\n\n'
        table_head 'figure'
        row 'Connect rate, plain, connections/s' connect '.connect.rate_per_s' '↑'
        row 'Connect rate, TLS, connections/s' connect-tls '.connect.rate_per_s' '↑'
        row 'Connect rate, mutual TLS (no rumqttd), connections/s' connect-mtls '.connect.rate_per_s' '↑'
        row 'Connect rate, Noise (Rampart only), connections/s' connect-noise '.connect.rate_per_s' '↑'
        row 'Connect latency p50, plain, ms' connect '.connect.latency_ms.p50' '↓'
        row 'Connect latency p99, plain, ms' connect '.connect.latency_ms.p99' '↓'
        row 'Connect latency p50, TLS, ms' connect-tls '.connect.latency_ms.p50' '↓'
        row 'Connect latency p99, TLS, ms' connect-tls '.connect.latency_ms.p99' '↓'
        row 'Connect latency p50, mutual TLS (no rumqttd), ms' connect-mtls '.connect.latency_ms.p50' '↓'
        row 'Connect latency p99, mutual TLS (no rumqttd), ms' connect-mtls '.connect.latency_ms.p99' '↓'
        row 'Connect latency p50, Noise (Rampart only), ms' connect-noise '.connect.latency_ms.p50' '↓'
        row 'Connect latency p99, Noise (Rampart only), ms' connect-noise '.connect.latency_ms.p99' '↓'
        row 'Failed connections, plain' connect '.connect.failed' '↓'
        row 'Failed connections, TLS' connect-tls '.connect.failed' '↓'
        row 'Failed connections, mutual TLS' connect-mtls '.connect.failed' '↓'
        printf '\n## Ingest\n\n'
        fmt_s='Scenario `ingest`: %s devices publish QoS %s at %s messages/s in total for %s s (plain TCP; '
        fmt_s+='Rampart validates and stores each report before its PUBACK, the brokers only route).\n\n'
        # shellcheck disable=SC2059 # the format is built just above
        printf "$fmt_s" \
            "$(meta .params.ingest_devices)" "$(meta .params.ingest_qos)" "$(meta .params.ingest_rate)" "$(meta .params.ingest_secs)"
        table_head 'figure'
        row 'Messages per second' ingest '.ingest.msgs_per_s' '↑'
        row 'Messages sent' ingest '.ingest.sent' '↑'
        row 'Messages acknowledged' ingest '.ingest.acked' '↑'
        row 'Messages lost' ingest '.ingest.lost' '↓'
        row 'Ack latency p50, ms' ingest '.ingest.ack_latency_ms.p50' '↓'
        row 'Ack latency p99, ms' ingest '.ingest.ack_latency_ms.p99' '↓'
        row 'End-to-end latency p50, ms' ingest '.ingest.e2e_latency_ms.p50' '↓'
        row 'End-to-end latency p99, ms' ingest '.ingest.e2e_latency_ms.p99' '↓'
        printf '\n## Commands\n\n'
        fmt_s='Scenario `command`: %s devices connected, %s commands at %s/s to random devices; the latency is '
        fmt_s+="the round trip to the device's answer (Rampart: HTTP API call to its response).\n\n"
        # shellcheck disable=SC2059 # the format is built just above
        printf "$fmt_s" \
            "$(meta .params.command_devices)" "$(meta .params.commands)" "$(meta .params.command_rate)"
        table_head 'figure'
        row 'Commands answered' command '.command.ok' '↑'
        row 'Commands failed' command '.command.failed' '↓'
        row 'Command latency p50, ms' command '.command.latency_ms.p50' '↓'
        row 'Command latency p99, ms' command '.command.latency_ms.p99' '↓'

        local failed=()
        for s in "${ALL_SERVERS[@]}"; do
            for scen in "${ALL_SCENARIOS[@]}"; do
                [[ -e $RAW/$s-$scen.log ]] && failed+=("$s $scen ([log]($NAME/$s-$scen.log))")
            done
        done
        if ((${#failed[@]})); then
            local joined
            joined=$(printf '%s, ' "${failed[@]}")
            printf '\n**Failed runs:** %s.\n' "${joined%, }"
        fi

        printf '\n## Machine\n\n'
        printf '| | |\n|---|---|\n'
        printf '| date | %s |\n' "$(meta .date)"
        printf '| CPU | %s × %s |\n' "$(meta .machine.nproc)" "$(meta .machine.cpu)"
        printf '| memory | %s |\n' "$(meta .machine.memory)"
        printf '| kernel | %s |\n' "$(meta .machine.kernel)"
        printf '| open-file limit | %s |\n' "$(meta .params.nofile)"
        printf '| Mosquitto | %s |\n' "$(meta .versions.mosquitto)"
        printf '| rumqttd | %s |\n' "$(meta .versions.rumqttd)"
        printf '| Rampart | %s |\n' "$(meta .versions.rampart)"
        printf '| MQTT version | %s |\n' "$(meta .params.mqtt_version)"

        printf '\n## Command lines\n\n'
        printf 'The script: `%s`\n\n' "$(meta .invocation)"
        printf '```sh\n'
        for s in "${ALL_SERVERS[@]}"; do
            f=$RAW/$s.server.cmd
            [[ -s $f ]] || continue
            printf '# %s server (started afresh for each scenario)\n' "$s"
            cat "$f"
            for scen in "${ALL_SCENARIOS[@]}"; do
                f=$RAW/$s-$scen.cmd
                [[ -s $f ]] || continue
                cat "$f"
            done
            printf '\n'
        done
        printf '```\n'
        for f in mosquitto.conf rumqttd.toml; do
            [[ -s $RAW/$f ]] || continue
            printf '\n<details><summary>%s</summary>\n\n```\n' "$f"
            cat "$RAW/$f"
            printf '```\n\n</details>\n'
        done
    } >"$tmp"
    mv "$tmp" "$MD"
    log "wrote $MD"
}

if ((REPORT_ONLY)); then
    command -v jq >/dev/null || die "jq is needed"
    [[ -d $RAW ]] || die "no results directory $RAW (set BENCH_DATE or --out)"
    write_report
    exit 0
fi

# ---- processes ----

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-bench-compare.XXXXXX")
declare -A LIVE=() # PIDs of the process groups started here and not yet reaped

alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}

# `stop_pid PID [GRACE_SECS]`: TERM the process group led by PID, KILL it after the grace period.
stop_pid() {
    local pid=$1 grace=${2:-15} i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        warn "PID $pid did not stop within ${grace}s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "LIVE[$pid]"
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${!LIVE[@]}"; do stop_pid "$pid" 5; done
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# `spawn LOG CMD...`: run CMD in a session of its own under the open-file limit; sets SPAWNED.
spawn() {
    local out=$1
    shift
    setsid bash -c 'ulimit -n "$0" || exit 111; exec "$@"' "$NOFILE" "$@" >"$out" 2>&1 </dev/null &
    SPAWNED=$!
    LIVE[$SPAWNED]=1
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# `wait_tcp PORT PID SECS`: until 127.0.0.1:PORT accepts, while PID lives.
wait_tcp() {
    local port=$1 pid=$2 deadline=$((SECONDS + $3))
    until tcp_open 127.0.0.1 "$port"; do
        alive "$pid" || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# `mqtt_ping PORT [--cafile FILE]`: one QoS 1 publish with mosquitto_pub, when it is installed.
# Over TLS it connects to "localhost": OpenSSL would send an IP literal as SNI, which rustls refuses.
mqtt_ping() {
    local port=$1 host=127.0.0.1 v=mqttv311
    shift
    command -v mosquitto_pub >/dev/null || return 0
    (($#)) && host=localhost
    [[ $MQTT_VERSION == 5 ]] && v=mqttv5
    timeout 10 mosquitto_pub -h "$host" -p "$port" -V "$v" -q 1 -i bench-compare-ready \
        -t bench-compare/ready -m ready "$@" >/dev/null 2>&1
}

# Quote a command line for the record (as a shell would need it), hiding the admin token.
quote_cmd() {
    local out='' a q="'"
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            out+=" $a"
        else
            out+=" '${a//$q/$q\\$q$q}'"
        fi
    done
    out=${out# }
    [[ -n ${ADMIN_TOKEN:-} ]] && out=${out//"$ADMIN_TOKEN"/'"$RAMPART_ADMIN_TOKEN"'}
    out=${out//"$WORK"/'$WORK'}
    printf '%s\n' "$out"
}

# ---- tools ----

SUDO=()
((EUID == 0)) || SUDO=(sudo)
APT_UPDATED=0
apt_install() {
    ((INSTALL)) || die "missing: $* (and --no-install given)"
    log "installing $* with apt-get"
    if ((APT_UPDATED == 0)); then
        "${SUDO[@]}" apt-get update >>"$WORK/install.log" 2>&1 || warn "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "$@" \
        >>"$WORK/install.log" 2>&1 || {
        tail -n 20 "$WORK/install.log" >&2
        die "apt-get install $* failed"
    }
}

want() { in_list "$1" "${SERVERS[@]}"; }

command -v jq >/dev/null || apt_install jq
command -v setsid >/dev/null || apt_install util-linux
command -v ps >/dev/null || apt_install procps
if want mosquitto || want rumqttd; then
    command -v openssl >/dev/null || apt_install openssl
fi

MOSQUITTO_BIN=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
if want mosquitto && [[ ! -x $MOSQUITTO_BIN ]]; then
    apt_install mosquitto
    [[ -x $MOSQUITTO_BIN ]] || die "no $MOSQUITTO_BIN after installing mosquitto"
fi

CARGO_BIN_DIR=${CARGO_HOME:-$HOME/.cargo}/bin
RUMQTTD_BIN=${RUMQTTD_BIN:-$(command -v rumqttd || printf '%s' "$CARGO_BIN_DIR/rumqttd")}
if want rumqttd && [[ ! -x $RUMQTTD_BIN ]]; then
    ((INSTALL)) || die "rumqttd is missing (and --no-install given)"
    log "installing rumqttd with cargo install (a few minutes)"
    # Not --locked: its lock file does not build on current toolchains.
    cargo install rumqttd >>"$WORK/install.log" 2>&1 || {
        tail -n 30 "$WORK/install.log" >&2
        die "cargo install rumqttd failed"
    }
    RUMQTTD_BIN=$CARGO_BIN_DIR/rumqttd
fi

if [[ -z ${RAMPART_BIN:-} ]]; then
    TARGET_DIR=${CARGO_TARGET_DIR:-target}
    [[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
    log "building rampart (release) into $TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p rampart) || die "cargo build --release -p rampart failed"
    RAMPART_BIN=$TARGET_DIR/release/rampart
fi
[[ -x $RAMPART_BIN ]] || die "no rampart binary at $RAMPART_BIN"
"$RAMPART_BIN" bench --help >/dev/null 2>&1 ||
    die "$RAMPART_BIN has no 'bench' subcommand (the load generator is needed for every server)"

# Our ports must be free (the system Mosquitto on 1883 is not among them).
for p in "$P_MOSQ" "$P_MOSQ_TLS" "$P_MOSQ_MTLS" "$P_RUMQ4" "$P_RUMQ4_TLS" "$P_RUMQ5" "$P_RUMQ5_TLS" "$P_RAMP" "$P_RAMP_TLS" "$P_RAMP_HTTP"; do
    tcp_open 127.0.0.1 "$p" && die "port $p is in use; set PORT_BASE to another range"
done
if ((CONNECTIONS + 500 > NOFILE * PROCESSES)); then
    warn "CONNECTIONS=$CONNECTIONS is close to NOFILE=$NOFILE per process; raise NOFILE or PROCESSES"
fi

# ---- server configurations ----

TLS=$WORK/tls
make_certs() {
    mkdir -p "$TLS"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -x509 "${ec[@]}" -days 7 -subj "/CN=rampart bench CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$TLS/ca.key" -out "$TLS/ca.pem"
        openssl req "${ec[@]}" -subj "/CN=localhost" -keyout "$TLS/server.key" -out "$TLS/server.csr"
        printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
            'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$TLS/server.ext"
        openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
            -days 7 -extfile "$TLS/server.ext" -out "$TLS/server.pem"
        # The CA that issues the generator's client certificates (connect-mtls); the generator
        # reads certificate and key from one file.
        openssl req -x509 "${ec[@]}" -days 7 -subj "/CN=rampart bench client CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$TLS/client-ca.key" -out "$TLS/client-ca.crt"
        cat "$TLS/client-ca.crt" "$TLS/client-ca.key" >"$TLS/client-ca.pem"
    } >"$WORK/openssl.log" 2>&1 || {
        cat "$WORK/openssl.log" >&2
        die "certificate generation failed"
    }
}

write_mosquitto_conf() {
    cat >"$WORK/mosquitto.conf" <<EOF
# bench-compare: plain and TLS listeners on loopback, anonymous, no logging, no persistence.
user $(id -un)
per_listener_settings false
allow_anonymous true
persistence false
log_dest none
set_tcp_nodelay true
listener $P_MOSQ 127.0.0.1
max_connections -1
listener $P_MOSQ_TLS 127.0.0.1
max_connections -1
certfile $TLS/server.pem
keyfile $TLS/server.key
listener $P_MOSQ_MTLS 127.0.0.1
max_connections -1
certfile $TLS/server.pem
keyfile $TLS/server.key
cafile $TLS/client-ca.crt
require_certificate true
EOF
}

write_rumqttd_conf() {
    local v n port tport
    {
        cat <<EOF
# bench-compare: rumqttd $("$RUMQTTD_BIN" --version 2>/dev/null | awk '{print $2}'), loopback only, no console or metrics listener.
id = 0

[router]
id = 0
max_connections = 100000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
EOF
        for v in 4 5; do
            if [[ $v == 4 ]]; then port=$P_RUMQ4 tport=$P_RUMQ4_TLS; else port=$P_RUMQ5 tport=$P_RUMQ5_TLS; fi
            for n in 1 2; do
                printf '\n[v%s.%s]\nname = "v%s-%s"\n' "$v" "$n" "$v" "$n"
                if [[ $n == 1 ]]; then
                    printf 'listen = "127.0.0.1:%s"\n' "$port"
                else
                    printf 'listen = "127.0.0.1:%s"\n' "$tport"
                fi
                printf 'next_connection_delay_ms = 0\n'
                if [[ $n == 2 ]]; then
                    printf '[v%s.%s.tls]\ncertpath = "%s"\nkeypath = "%s"\n' "$v" "$n" "$TLS/server.pem" "$TLS/server.key"
                fi
                printf '[v%s.%s.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 262144\n' "$v" "$n"
                printf 'max_inflight_count = 100\ndynamic_filters = true\n'
            done
        done
    } >"$WORK/rumqttd.toml"
}

ADMIN_TOKEN=$(openssl rand -hex 24 2>/dev/null || od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
DATA=$WORK/rampart-data

# `server_cmd SERVER`: the command line that starts SERVER (into the SERVER_CMD array).
server_cmd() {
    case $1 in
    mosquitto) SERVER_CMD=("$MOSQUITTO_BIN" -c "$WORK/mosquitto.conf") ;;
    rumqttd) SERVER_CMD=(env RUST_LOG=error "$RUMQTTD_BIN" -q -c "$WORK/rumqttd.toml") ;;
    rampart)
        # Identities are registered from this one address: no per-address registration rate.
        # The plain-TCP scenarios speak plain MQTT: allowed beside the secure-session layer.
        SERVER_CMD=(env RUST_LOG=error RAMPART_ADMIN_TOKEN="$ADMIN_TOKEN" RAMPART_LIMITS__REGISTER_IP__PER_MINUTE=0
            RAMPART_MQTT__ALLOW_UNENCRYPTED=true
            "$RAMPART_BIN" serve --data "$DATA"
            --mqtt-listen "127.0.0.1:$P_RAMP" --mqtt-tls-listen "127.0.0.1:$P_RAMP_TLS"
            --http-listen "127.0.0.1:$P_RAMP_HTTP" --events-listen 127.0.0.1:0)
        ;;
    esac
}

# `start_server SERVER`: start it and wait until it serves; sets SERVER_PID.
start_server() {
    local s=$1 out=$WORK/$1.server.log ok=1
    server_cmd "$s"
    spawn "$out" "${SERVER_CMD[@]}"
    SERVER_PID=$SPAWNED
    case $s in
    mosquitto)
        wait_tcp "$P_MOSQ" "$SERVER_PID" 20 && wait_tcp "$P_MOSQ_TLS" "$SERVER_PID" 5 &&
            wait_tcp "$P_MOSQ_MTLS" "$SERVER_PID" 5 &&
            mqtt_ping "$P_MOSQ" && mqtt_ping "$P_MOSQ_TLS" --cafile "$TLS/ca.pem" || ok=0
        ;;
    rumqttd)
        local p=$P_RUMQ4 pt=$P_RUMQ4_TLS
        [[ $MQTT_VERSION == 5 ]] && p=$P_RUMQ5 pt=$P_RUMQ5_TLS
        wait_tcp "$p" "$SERVER_PID" 20 && wait_tcp "$pt" "$SERVER_PID" 5 &&
            mqtt_ping "$p" && mqtt_ping "$pt" --cafile "$TLS/ca.pem" || ok=0
        ;;
    rampart)
        # listeners.json is written once every listener is bound.
        local deadline=$((SECONDS + 60))
        until [[ -s $DATA/listeners.json ]]; do
            if ! alive "$SERVER_PID" || ((SECONDS >= deadline)); then
                ok=0
                break
            fi
            sleep 0.2
        done
        if ((ok)); then
            wait_tcp "$P_RAMP" "$SERVER_PID" 10 && wait_tcp "$P_RAMP_TLS" "$SERVER_PID" 5 || ok=0
        fi
        if ((ok)) && command -v curl >/dev/null; then
            curl -fsS --max-time 5 --cacert "$DATA/tls/cert.pem" \
                "https://localhost:$P_RAMP_HTTP/healthz" >/dev/null 2>&1 || ok=0
        fi
        ;;
    esac
    if ((ok == 0)); then
        warn "$s did not start; its output:"
        tail -n 30 "$out" >&2 || true
        cp "$out" "$RAW/$s.server.log" 2>/dev/null || true
        stop_pid "$SERVER_PID" 5
        return 1
    fi
    log "$s is up (PID $SERVER_PID)"
}

stop_server() {
    stop_pid "$SERVER_PID" 15
    rm -f "$DATA/listeners.json"
    sleep "$SETTLE_SECS"
}

# `scenario_args SERVER SCENARIO`: the generator's arguments (into GEN_ARGS).
scenario_args() {
    local s=$1 scen=$2 plain tls mtls ca
    case $s in
    mosquitto) plain=$P_MOSQ tls=$P_MOSQ_TLS mtls=$P_MOSQ_MTLS ca=$TLS/ca.pem ;;
    rumqttd)
        plain=$P_RUMQ4 tls=$P_RUMQ4_TLS ca=$TLS/ca.pem
        [[ $MQTT_VERSION == 5 ]] && plain=$P_RUMQ5 tls=$P_RUMQ5_TLS
        ;;
    rampart) plain=$P_RAMP tls=$P_RAMP_TLS mtls=$P_RAMP_TLS ca=$DATA/tls/cert.pem ;;
    esac
    case $scen in
    connect)
        GEN_ARGS=(connect --target "127.0.0.1:$plain" --connections "$CONNECTIONS" --rate "$CONNECT_RATE"
            --hold-secs "$HOLD_SECS")
        ;;
    connect-tls)
        GEN_ARGS=(connect --target "127.0.0.1:$tls" --tls --connections "$CONNECTIONS" --rate "$CONNECT_RATE"
            --hold-secs "$HOLD_SECS")
        ;;
    connect-mtls)
        GEN_ARGS=(connect --target "127.0.0.1:$mtls" --tls --client-ca "$TLS/client-ca.pem"
            --connections "$CONNECTIONS" --rate "$CONNECT_RATE" --hold-secs "$HOLD_SECS")
        ;;
    connect-noise)
        GEN_ARGS=(connect --target "127.0.0.1:$plain" --noise --connections "$CONNECTIONS" --rate "$CONNECT_RATE"
            --hold-secs "$HOLD_SECS")
        ;;
    ingest)
        GEN_ARGS=(ingest --target "127.0.0.1:$plain" --devices "$INGEST_DEVICES" --rate "$INGEST_RATE"
            --qos "$INGEST_QOS" --duration-secs "$INGEST_SECS" --payload-bytes "$PAYLOAD_BYTES")
        ;;
    command)
        GEN_ARGS=(command --target "127.0.0.1:$plain" --devices "$COMMAND_DEVICES" --commands "$COMMANDS"
            --rate "$COMMAND_RATE")
        ;;
    esac
    GEN_ARGS+=(--mqtt-version "$MQTT_VERSION" --keepalive-secs "$KEEPALIVE_SECS" --source-ips "$SOURCE_IPS"
        --processes "$PROCESSES" --timeout-secs "$TIMEOUT_SECS")
    if [[ $s == rampart ]]; then
        local ids=$DATA/bench-identities.csv
        [[ $scen == connect-mtls ]] && ids=$DATA/bench-cert-identities.csv
        GEN_ARGS+=(--rampart --data "$DATA" --api "https://localhost:$P_RAMP_HTTP" --admin-token "$ADMIN_TOKEN"
            --ca "$ca" --identities "$ids")
    elif [[ $scen == connect-tls || $scen == connect-mtls ]]; then
        GEN_ARGS+=(--ca "$ca")
    fi
}

# `run_scenario SERVER SCENARIO`: one generator run against the running server.
run_scenario() {
    local s=$1 scen=$2 json=$RAW/$1-$2.json out=$WORK/$1-$2.log rc=0
    scenario_args "$s" "$scen"
    local cmd=("$RAMPART_BIN" bench "${GEN_ARGS[@]}" --server-pid "$SERVER_PID" --label "$s" --out "$json")
    local shown
    shown=$(quote_cmd "${cmd[@]}")
    shown=${shown//"$RAW"/"${RAW#"$ROOT"/}"}
    printf '%s\n' "$shown" >"$RAW/$s-$scen.cmd"
    log "$s: $scen"
    spawn "$out" timeout --kill-after=10 "$((TIMEOUT_SECS + 120))" "${cmd[@]}"
    local gen=$SPAWNED
    wait "$gen" || rc=$?
    unset "LIVE[$gen]"
    if ((rc != 0)) || ! jq -e . "$json" >/dev/null 2>&1; then
        warn "$s $scen failed (exit $rc); the end of its output:"
        tail -n 20 "$out" >&2 || true
        sed "s/$ADMIN_TOKEN/***/g" "$out" >"$RAW/$s-$scen.log"
        if [[ -s $json ]] && ! jq -e . "$json" >/dev/null 2>&1; then mv "$json" "$json.invalid"; fi
    else
        # The generator's summary, for the console.
        grep -v '^\s*$' "$out" | tail -n 8 >&2 || true
    fi
}

# ---- run ----

mkdir -p "$RAW"
for s in "${SERVERS[@]}"; do
    rm -f "$RAW/$s.server.log"
    for scen in "${SCENARIOS[@]}"; do rm -f "$RAW/$s-$scen".{json,json.invalid,cmd,log}; done
done
make_certs
if want mosquitto; then
    write_mosquitto_conf
    cp "$WORK/mosquitto.conf" "$RAW/mosquitto.conf"
fi
if want rumqttd; then
    write_rumqttd_conf
    cp "$WORK/rumqttd.toml" "$RAW/rumqttd.toml"
fi
# Paths in the recorded configurations: the temporary directory as $WORK.
for f in "$RAW/mosquitto.conf" "$RAW/rumqttd.toml"; do
    [[ -e $f ]] && sed -i "s|$WORK|\$WORK|g" "$f"
done

version_of() {
    case $1 in
    mosquitto) "$MOSQUITTO_BIN" -h 2>&1 | head -n 1 || true ;;
    rumqttd) "$RUMQTTD_BIN" --version 2>&1 | head -n 1 || true ;;
    rampart) "$RAMPART_BIN" --version 2>&1 | head -n 1 || true ;;
    esac
}
declare -A VERSION=()
for s in "${ALL_SERVERS[@]}"; do
    VERSION[$s]=
    want "$s" && VERSION[$s]=$(version_of "$s")
done
# Keep the versions of servers not run this time from an earlier meta.json of the same date.
if [[ -s $RAW/meta.json ]]; then
    for s in "${ALL_SERVERS[@]}"; do
        [[ -n ${VERSION[$s]} ]] || VERSION[$s]=$(jq -r ".versions.$s // empty" "$RAW/meta.json" 2>/dev/null || true)
    done
fi
jq -n \
    --arg date "$(date '+%F %T %Z')" \
    --arg invocation "$(quote_cmd scripts/bench-compare.sh "${ORIG_ARGS[@]}")" \
    --arg nproc "$(nproc)" \
    --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)" \
    --arg memory "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)" \
    --arg kernel "$(uname -sr)" \
    --arg mosquitto "${VERSION[mosquitto]}" --arg rumqttd "${VERSION[rumqttd]}" --arg rampart "${VERSION[rampart]}" \
    --arg connections "$CONNECTIONS" --arg connect_rate "$CONNECT_RATE" --arg hold_secs "$HOLD_SECS" \
    --arg keepalive_secs "$KEEPALIVE_SECS" --arg source_ips "$SOURCE_IPS" --arg processes "$PROCESSES" \
    --arg ingest_devices "$INGEST_DEVICES" --arg ingest_rate "$INGEST_RATE" --arg ingest_secs "$INGEST_SECS" \
    --arg ingest_qos "$INGEST_QOS" --arg payload_bytes "$PAYLOAD_BYTES" --arg commands "$COMMANDS" \
    --arg command_rate "$COMMAND_RATE" --arg command_devices "$COMMAND_DEVICES" \
    --arg mqtt_version "$MQTT_VERSION" --arg nofile "$NOFILE" --argjson smoke "$SMOKE" \
    '{date: $date, invocation: $invocation, smoke: ($smoke == 1),
      machine: {nproc: $nproc, cpu: (if $cpu == "" then "unknown CPU" else $cpu end), memory: $memory, kernel: $kernel},
      versions: ({mosquitto: $mosquitto, rumqttd: $rumqttd, rampart: $rampart} | with_entries(select(.value != ""))),
      params: {connections: $connections, connect_rate: $connect_rate, hold_secs: $hold_secs,
        keepalive_secs: $keepalive_secs, source_ips: $source_ips, processes: $processes,
        ingest_devices: $ingest_devices, ingest_rate: $ingest_rate, ingest_secs: $ingest_secs,
        ingest_qos: $ingest_qos, payload_bytes: $payload_bytes, commands: $commands,
        command_rate: $command_rate, command_devices: $command_devices, mqtt_version: $mqtt_version,
        nofile: $nofile}}' >"$RAW/meta.json"

for s in "${SERVERS[@]}"; do
    server_cmd "$s"
    quote_cmd "${SERVER_CMD[@]}" >"$RAW/$s.server.cmd"
    for scen in "${SCENARIOS[@]}"; do
        # The secure-session layer is Rampart's own.
        [[ $scen == connect-noise && $s != rampart ]] && continue
        # rumqttd is left out of client-certificate runs (no client CA is configured for it).
        [[ $scen == connect-mtls && $s == rumqttd ]] && continue
        if start_server "$s"; then
            run_scenario "$s" "$scen"
            stop_server
        else
            warn "skipping $s $scen"
        fi
    done
done

write_report
