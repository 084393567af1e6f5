#!/usr/bin/env bash
# Password hashing under a login flood: starts a release build on port 0 (per-IP caps off, so one
# address can open 1,000 connections), probes /healthz every 50 ms on a fresh TLS connection and on
# the plain operations listener (--metrics-listen), fires ROUNDS rounds of 1,000 concurrent wrong
# logins (scripts/login-flood.py), and prints the server's RSS before, at its peak and after, and
# the probes' p50 / p99 / max. Needs curl and python3. Usage: scripts/login-flood.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
cargo build --release -p rampart >/dev/null
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 20000
RAMPART_ADMIN_TOKEN=login-flood-admin-token RAMPART_HTTP__MAX_CONNECTIONS_PER_IP=0 \
    RAMPART_LIMITS__IP__PER_MINUTE=0 RUST_LOG=warn target/release/rampart serve --data "$work/data" \
    --http-listen 127.0.0.1:0 --mqtt-tls-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --events-listen 127.0.0.1:0 >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [[ -s "$work/data/listeners.json" ]] && break; sleep 0.1; done
port() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]].rsplit(':',1)[1])" "$work/data/listeners.json" "$1"; }
https=$(port http); ops=$(port metrics)
probe() { # URL SECONDS OUT
    local end=$((SECONDS + $2))
    while [[ $SECONDS -lt $end ]]; do
        curl -k -s -o /dev/null -w "%{http_code} %{time_total}\n" --max-time 10 "$1/healthz" >>"$3"
        sleep 0.05
    done
}
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
before=$(rss VmRSS)
probe "https://127.0.0.1:$https" 25 "$work/tls.txt" &
p1=$!
probe "http://127.0.0.1:$ops" 25 "$work/ops.txt" &
p2=$!
sleep 1
python3 scripts/login-flood.py 127.0.0.1 "$https" "$rounds"
wait "$p1" "$p2"
echo "RSS before ${before} KiB, peak $(rss VmHWM) KiB, after $(rss VmRSS) KiB"
for f in tls ops; do
    sort -n -k2 "$work/$f.txt" | awk -v f="$f" '{a[NR]=$2; if ($1 != 200) bad++}
        END {printf "/healthz (%s): %d probes, %d not 200, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
             f, NR, bad, a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000, a[NR]*1000}'
done
