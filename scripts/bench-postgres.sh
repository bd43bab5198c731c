#!/usr/bin/env bash
# Lookups per second with USERS users in PostgreSQL, at 16 connections,
# answered (a) from the in-process cache, (b) from Redis, (c) from
# PostgreSQL, and the embedded store with the same users in the same run.
# The users are the bench package's deterministic population, written as
# CSV and loaded with `tohost import` (COPY).
#   scripts/bench-postgres.sh        # USERS=1000000 SECS=10
set -euo pipefail
. "$(dirname "$0")/bench-gen.sh" # GEN, users_csv
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000} SECS=${SECS:-10}
PG_ADMIN=${TOHOST_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
REDIS=${TOHOST_TEST_REDIS:-127.0.0.1:6379}
db=tohost_bench_$$
pg=${PG_ADMIN%%/test*}/$db?sslmode=disable
work=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -h "${REDIS%:*}" -p "${REDIS#*:}" --scan --pattern "$db:*" | xargs -r -n 1000 redis-cli -h "${REDIS%:*}" -p "${REDIS#*:}" del >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/tohost" ./cmd/tohost
t="$work/tohost"
users_csv "$USERS" "$work/users.csv" "$t"
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
echo "# import $USERS users into PostgreSQL and into the embedded store"
"$t" import --postgres "$pg" "$work/users.csv"
"$t" import --data-dir "$work/bolt" "$work/users.csv"

run() { # name, address, warm (1: fill the cache first), flags...
  local name=$1 addr=$2 warm=$3; shift 3
  "$t" directory --tcpauth-addr "$addr" --http-addr "" --ldap-addr "" --log-level warn "$@" &
  local pid=$!
  sleep 2
  # random lookups of 3 x USERS fill the cache layer being measured with
  # about 95% of the users
  [ "$warm" = 1 ] && "$t" bench --mode lookup --directory "$addr" -c 16 --depth 16 -n $((USERS * 3)) -d 0 --users "$USERS" >/dev/null
  echo "# $name"
  "$t" bench --mode lookup --directory "$addr" --verify-host -c 16 -d "${SECS}s" --users "$USERS"
  kill $pid; wait $pid 2>/dev/null || true
}
run "embedded store, in-process cache" 127.0.0.1:14120 1 --data-dir "$work/bolt"
run "(a) postgres, all hits in the in-process cache" 127.0.0.1:14121 1 --postgres "$pg" --redis "redis://$REDIS" --redis-prefix "$db:"
run "(b) postgres, all from redis" 127.0.0.1:14122 1 --postgres "$pg" --redis "redis://$REDIS" --redis-prefix "$db:" --cache-size 1
run "(c) postgres, all from postgres" 127.0.0.1:14123 0 --postgres "$pg" --cache-size 1
