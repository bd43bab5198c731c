#!/usr/bin/env bash
# Writes the deterministic benchmark population (package bench: user i is
# userNNNNNNN@domainDD.example, password pw-NNNNNNN stored as {SSHA}, with
# tohost, quota and name fields) as CSV, using nothing but tohost itself:
# `tohost bench --mode set` loads users 0..N-1 into a scratch embedded
# store and `tohost export` writes them out, in name order (which is index
# order), with the header user,password_hash,tohost,quota,name.
#   scripts/bench-users.sh N FILE [TOHOST]   # TOHOST: a built binary (default: go run)
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 N FILE [TOHOST]" >&2
  exit 2
fi
n=$1 out=$2 t=${3:-}
scratch=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT
if [ -z "$t" ]; then
  (cd "$(dirname "$0")/.." && go build -o "$scratch/tohost" ./cmd/tohost)
  t=$scratch/tohost
fi
addr=127.0.0.1:14590
"$t" directory --data-dir "$scratch/data" --tcpauth-addr "$addr" --http-addr "" --ldap-addr "" --log-level warn &
pid=$!
for _ in $(seq 100); do # until it listens
  (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break
  sleep 0.1
done
"$t" bench --mode set --directory "$addr" -c 1 --depth 1024 --users "$n" >/dev/null
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
"$t" export --data-dir "$scratch/data" "$out" >/dev/null
