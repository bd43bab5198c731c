#!/usr/bin/env bash
# Bulk import of USERS users (the bench package's deterministic population,
# CSV with {SSHA} hashes) into an empty PostgreSQL database and into an
# empty embedded store, each repetition next to psql's \copy of the same
# CSV into a bare table and into a table with a text primary key, so the
# ratios come from one run. With GEN set and OpenLDAP's slapadd installed,
# each repetition also loads the same users as LDIF (inetOrgPerson entries,
# as the generator writes them), with tohost into PostgreSQL and with the
# generator folder's slapd/load.sh (slapadd -q).
#   scripts/bench-import.sh          # USERS=1000000 REPS=2
set -euo pipefail
. "$(dirname "$0")/bench-gen.sh" # GEN, users_csv
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000} REPS=${REPS:-2}
PG_ADMIN=${TOHOST_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
db=tohost_import_$$
pg=${PG_ADMIN%%/test*}/$db?sslmode=disable
work=$(mktemp -d)
cleanup() {
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/tohost" ./cmd/tohost
t="$work/tohost"
users_csv "$USERS" "$work/users.csv" "$t"
slapadd=$(command -v slapadd || command -v /usr/sbin/slapadd || true)
if [ -n "$slapadd" ] && { [ -z "$GEN" ] || [ ! -d "$GEN/slapd" ]; }; then
  echo "# no LDIF comparison: it needs GEN, a generator folder with slapd/" >&2
  slapadd=
fi
if [ -n "$slapadd" ]; then
  (cd "$GEN" && go run ./gen -n "$USERS" -format ldif -o "$work/users.ldif")
  mkdir -p "$work/bench" && cp -r "$GEN/slapd" "$work/bench/" # its database goes under $work
fi

fresh() { # an empty database, written out, so no run pays for the last one's checkpoint
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  psql "$pg" -qc CHECKPOINT
  sync
}
timed() { # label, command...: runs the command, prints label and wall seconds
  local label=$1 t0 t1; shift
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  label=$label awk -v t0="$t0" -v t1="$t1" -v n="$USERS" \
    'BEGIN { s = t1 - t0; printf "%s: %.2f s, %.0f rows/s\n", ENVIRON["label"], s, n / s }'
}
table() { # an empty database holding one table: users (definition)
  fresh
  psql "$pg" -qc "CREATE TABLE users ($1)" -c CHECKPOINT
}
cols='login text, password_hash text, tohost text, quota bigint, name text'
copy=(psql "$pg" -qc "\\copy users FROM '$work/users.csv' WITH (FORMAT csv, HEADER true)")
for _ in $(seq "$REPS"); do
  table "$cols"
  timed "psql \\copy, bare table" "${copy[@]}"
  table "${cols/login text/login text PRIMARY KEY}"
  timed "psql \\copy, text primary key" "${copy[@]}"
  fresh
  "$t" directory migrate --postgres "$pg" >/dev/null
  timed "tohost import into PostgreSQL (indexes built)" "$t" import --postgres "$pg" "$work/users.csv"
  rm -rf "$work/bolt"
  sync
  timed "tohost import into the embedded store" "$t" import --data-dir "$work/bolt" "$work/users.csv"
  [ -n "$slapadd" ] || continue
  fresh
  "$t" directory migrate --postgres "$pg" >/dev/null
  timed "tohost import of the LDIF into PostgreSQL" "$t" import --postgres "$pg" "$work/users.ldif"
  "$work/bench/slapd/load.sh" "$work/users.ldif" | grep "^slapadd"
done
