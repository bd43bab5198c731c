#!/usr/bin/env bash
# Measures the embedded-store directory against the bare line-echo server in
# one run (the echo server is the physical limit of a request/response over
# loopback here): pipelined durable `set` of USERS users over one
# connection, then lookups at 16 connections, unpipelined and 16 deep.
#   scripts/bench-directory.sh            # USERS=100000 SECS=10 REPS=3
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000} SECS=${SECS:-10} REPS=${REPS:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/tohost" ./cmd/tohost
t="$work/tohost"
"$t" bench --mode echo-server --listen 127.0.0.1:14070 &
"$t" directory --data-dir "$work/data" --tcpauth-addr 127.0.0.1:14020 --http-addr "" --ldap-addr "" --log-level warn &
sleep 1
echo "# pipelined set of $USERS users, {SSHA} hashes, one connection, 1024 in flight"
"$t" bench --mode set --directory 127.0.0.1:14020 -c 1 --depth 1024 --users "$USERS"
"$t" bench --mode lookup --directory 127.0.0.1:14020 -c 16 --depth 16 -d 3s --users "$USERS" >/dev/null # warm the cache
for depth in 1 16; do
  echo "# lookups, 16 connections, depth $depth: echo server, then directory"
  for _ in $(seq "$REPS"); do
    "$t" bench --mode lookup --directory 127.0.0.1:14070 --accept-any -c 16 --depth "$depth" -d "${SECS}s"
    "$t" bench --mode lookup --directory 127.0.0.1:14020 --verify-host -c 16 --depth "$depth" -d "${SECS}s" --users "$USERS"
  done
done
echo "# check, {SSHA}, 16 connections"
"$t" bench --mode check --directory 127.0.0.1:14020 -c 16 -d "${SECS}s" --users "$USERS"
