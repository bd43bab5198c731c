#!/usr/bin/env bash
# One directory node on USERS users (default ten million), measured in one
# run: bulk import into the embedded store and into PostgreSQL (time, disk
# bytes per user), start-up time on the full store, resident memory per
# user in the in-process cache (--cache-size CACHE users, filled by
# lookups), and lookups at 16 connections over all USERS users with that
# cache next to the same run against a directory of SMALL users.
#   scripts/bench-node.sh          # USERS=10000000 CACHE=1000000 SMALL=100000 SECS=10
#   SKIP_PG=1 scripts/bench-node.sh   # embedded store only
set -euo pipefail
. "$(dirname "$0")/bench-gen.sh" # GEN, users_csv
cd "$(dirname "$0")/.."
USERS=${USERS:-10000000} CACHE=${CACHE:-1000000} SMALL=${SMALL:-100000} SECS=${SECS:-10}
PG_ADMIN=${TOHOST_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
db=tohost_node_$$
pg=${PG_ADMIN%%/test*}/$db?sslmode=disable
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "${SKIP_PG:-}" ] || psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/tohost" ./cmd/tohost
t="$work/tohost"
users_csv "$USERS" "$work/users.csv" "$t"
head -n $((SMALL + 1)) "$work/users.csv" >"$work/small.csv"

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
per_user() { awk -v b="$1" -v n="$USERS" 'BEGIN { printf "%.0f", b / n }'; }

echo "# import of $USERS users"
s=$(date +%s%N)
"$t" import --data-dir "$work/emb" "$work/users.csv" >/dev/null 2>&1
e=$(date +%s%N)
echo "embedded: $(secs "$s" "$e") s, $(per_user "$(stat -c %s "$work/emb/tohost.db")") bytes/user on disk"
"$t" import --data-dir "$work/small" "$work/small.csv" >/dev/null 2>&1
if [ -z "${SKIP_PG:-}" ]; then
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" -c CHECKPOINT
  s=$(date +%s%N)
  "$t" import --postgres "$pg" "$work/users.csv" >/dev/null 2>&1
  e=$(date +%s%N)
  echo "postgres: $(secs "$s" "$e") s, $(per_user "$(psql "$pg" -Atc "SELECT pg_database_size('$db')")") bytes/user on disk"
fi

addr=127.0.0.1:14620 http=127.0.0.1:14680
start() { # start DATA_DIR: starts a directory; ms: the time until it listened
  local s e
  s=$(date +%s%N)
  "$t" directory --data-dir "$1" --tcpauth-addr "$addr" --http-addr "$http" --ldap-addr "" \
    --cache-size "$CACHE" --log-level warn >>"$work/directory.log" 2>&1 &
  pid=$!
  until (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; do sleep 0.001; done
  e=$(date +%s%N)
  ms=$(((e - s) / 1000000))
}
stop() { kill "$pid" && wait "$pid" 2>/dev/null || true; pid=; }
rss() { awk '/^RssAnon:/ { print $2 * 1024 }' "/proc/$pid/status"; }
metric() { curl -s "http://$http/metrics" | awk -v m="$1" '$1 == m { printf "%.0f", $2 }'; }
lookups() { "$t" bench --mode lookup --directory "$addr" --verify-host -c 16 -d "${SECS}s" --users "$1"; }

echo "# start-up on $USERS users (ms until TCPAuth listens, three starts)"
for _ in 1 2 3; do
  start "$work/emb"
  echo "$ms ms"
  stop
done

echo "# memory per cached user: lookups until $CACHE users are cached"
start "$work/emb"
sleep 1
before=$(rss)
"$t" bench --mode lookup --directory "$addr" -c 4 --depth 16 -n $((CACHE * 6)) -d 0 --users "$CACHE" >/dev/null
sleep 1
after=$(rss) n=$(metric tohost_cache_entries) rec=$(metric tohost_cache_record_bytes)
awk -v a="$before" -v b="$after" -v n="$n" -v r="$rec" 'BEGIN {
  printf "%d users cached: resident +%.0f MB, %.0f bytes a user, %.0f of them its record, %.0f beyond\n",
    n, (b - a) / 1e6, (b - a) / n, r / n, (b - a - r) / n }'

echo "# lookups, 16 connections: over all $USERS users with a cache of $CACHE, then a directory of $SMALL"
cat "$work/emb/tohost.db" >/dev/null # the store in the page cache, as on a server whose memory holds it
lookups "$USERS" >/dev/null          # warm-up
lookups "$USERS"
stop
start "$work/small"
lookups "$SMALL" >/dev/null
lookups "$SMALL"
stop
