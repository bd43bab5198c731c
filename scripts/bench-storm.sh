#!/usr/bin/env bash
# Login storms on one directory with its defaults (embedded store, the
# default password scheme, argon2id), measured in one run:
#   1. cold: each of USERS users (passwords set in the default scheme)
#      checked once, with the verification cache empty;
#   2. warm: checks of the same users for SECS seconds, one at a time
#      and then 64 in flight per connection;
#   3. lookups at 16 connections alone, then the same while 64 other
#      connections check random unknown names (each one costs a stand-in
#      hash, so this is a storm of guesses).
# Extra flags for the directory (e.g. --hash-workers 2) go in DIRECTORY_FLAGS.
#   scripts/bench-storm.sh          # USERS=1000 SECS=10
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000} SECS=${SECS:-10} DIRECTORY_FLAGS=${DIRECTORY_FLAGS:-}
work=$(mktemp -d)
pid= storm=
cleanup() {
  [ -n "$storm" ] && kill "$storm" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/tohost" ./cmd/tohost
t="$work/tohost"
# The benchmark population with cleartext passwords (user NNNNNNN's is
# pw-NNNNNNN), which the import hashes in the default scheme.
scripts/bench-users.sh "$USERS" "$work/hashed.csv" "$t"
awk -F, 'NR == 1 { print "user,password,tohost,quota,name"; next }
  { print $1 ",pw-" substr($1, 5, 7) "," $3 "," $4 "," $5 }' "$work/hashed.csv" >"$work/users.csv"
"$t" import --data-dir "$work/data" "$work/users.csv" >/dev/null

addr=127.0.0.1:14720
# shellcheck disable=SC2086 # DIRECTORY_FLAGS is a list of flags
"$t" directory --data-dir "$work/data" --tcpauth-addr "$addr" --http-addr "" --ldap-addr "" \
  --log-level error $DIRECTORY_FLAGS &
pid=$!
until (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; do sleep 0.01; done
b() { "$t" bench --directory "$addr" --users "$USERS" "$@"; }

echo "# cold: each of $USERS users checked once, 16 connections"
b --mode check -c 16 --once -d 0 --timeout 30s
echo "# warm: the same users, ${SECS} s"
b --mode check -c 16 -d "${SECS}s"
b --mode check -c 16 --depth 64 -d "${SECS}s" # pipelined, as a busy front end sends them
echo "# lookups, 16 connections: alone, then while 64 connections check random unknown names"
b --mode lookup -c 16 -d "${SECS}s" --verify-host
# Unknown names: users past the imported ones; their checks must be refused
# (a -DEAD busy answer counts as an error there, and is expected).
b --mode check -c 64 --first 10000000 --users 1000000 --miss 1 -d $((SECS + 4))s --timeout 30s >"$work/storm.out" 2>&1 &
storm=$!
sleep 2
b --mode lookup -c 16 -d "${SECS}s" --verify-host
wait "$storm" || true
storm=
echo "(the storm: $(grep -o 'mode=check.*' "$work/storm.out" || tail -1 "$work/storm.out"))"
