#!/usr/bin/env bash
# A small `rampart bench` scenario run from CI: checks that the load generator and the server still work
# together at a few thousand connections (no figures are judged here; see scripts/bench-compare.sh).
#
# Usage: scripts/bench-smoke.sh [RAMPART_BINARY]   (default: the debug build, built if missing)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/rampart}
CONNECTIONS=${CONNECTIONS:-2000}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build -p rampart)
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The load generator registers its identities from one address, like a factory line: the
# per-address registration rate (`limits.register_ip`) is off for it.
env -u RAMPART_CONFIG RAMPART_ADMIN_TOKEN=smoke-admin-token-0123456789 RUST_LOG=error \
    RAMPART_LIMITS__REGISTER_IP__PER_MINUTE=0 \
    RAMPART_MQTT__ALLOW_UNENCRYPTED=true \
    "$BIN" serve --data "$WORK/data" --mqtt-listen 127.0.0.1:0 --mqtt-tls-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --events-listen 127.0.0.1:0 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    [ -s "$WORK/data/listeners.json" ] && break
    sleep 0.1
done
[ -s "$WORK/data/listeners.json" ] || { cat "$WORK/server.log"; echo "server did not start" >&2; exit 1; }
TARGET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mqtt"])' "$WORK/data/listeners.json")

"$BIN" bench connect --target "$TARGET" --connections "$CONNECTIONS" --rate 2000 --hold-secs 2 \
    --rampart --data "$WORK/data" --server-pid "$SERVER_PID" --source-ips 4 --timeout-secs 300 \
    --out "$WORK/connect.json" 2>"$WORK/bench.err" || { cat "$WORK/bench.err"; exit 1; }
read -r OK RSS < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["connect"]["ok"], r["server"]["rss_per_conn_kib"])' "$WORK/connect.json")
echo "bench smoke: $OK of $CONNECTIONS connections authenticated; server RSS $RSS KiB per connection (debug build)"
[ "$OK" = "$CONNECTIONS" ] || { cat "$WORK/bench.err"; exit 1; }
