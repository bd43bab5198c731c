#!/usr/bin/env bash
# Every request type of the cluster in one run, on this machine, each at
# each of CONNS connections for SECS seconds, then one markdown table:
# mode | conns | rate/s | p50 | p99 | p999 | errors, and the CPU each
# server process spent per request over that run (from /proc: utime +
# stime), which is what sizing a cluster needs (docs/scale.md).
#
# Set up (all on 127.0.0.1, one built binary):
#  - the bench package's population of USERS users (scripts/bench-users.sh,
#    {SSHA} hashes), every user's tohost rewritten to 127.0.0.1, the one
#    backend's name, so that every user any mode draws is deliverable and
#    can log in (lmtp-deliver runs with --tohost "", every user);
#  - tohost directory on PostgreSQL + Redis (STORE=postgres, the default: a
#    scratch database and key prefix, users loaded with `tohost import`) or
#    on the embedded store (STORE=bolt), with LDAP on and anonymous reads;
#    a warm-up of random lookups fills its in-process cache first;
#  - tohost backend --name 127.0.0.1 (Maildir, LMTP, IMAP, POP3), and the
#    INBOX of user FETCH_USER filled with MSGS messages of ~10 KB over LMTP;
#  - tohost proxy in front of it (IMAP, POP3, incoming SMTP to the
#    backend's LMTP), with no per-address connection cap.
#
# Modes and where they go: lookup, check (TCPAuth), ldap-search, ldap-bind
# (LDAP) to the directory; imap-login, pop3-login, imap-fetch (FETCH 1:MSGS
# (FLAGS ENVELOPE), then BODY.PEEK[], as two runs) and smtp-relay through
# the proxy; lmtp-deliver to the backend's LMTP. lookup and ldap-search do
# not check the tohost (--verify-host), since it is 127.0.0.1 for all.
# Every command is echoed as it runs. Any bench error is shown in the
# table and makes the exit status non-zero.
#   scripts/bench-all.sh   # USERS=100000 CONNS="1 16 64" SECS=5 MSGS=100 STORE=postgres
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000} CONNS=${CONNS:-1 16 64} SECS=${SECS:-5} MSGS=${MSGS:-100} STORE=${STORE:-postgres}
FETCH_USER=${FETCH_USER:-0}
PG_ADMIN=${TOHOST_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
REDIS=${TOHOST_TEST_REDIS:-127.0.0.1:6379}
DIR=127.0.0.1:14820 LDAP=127.0.0.1:14821
BE_LMTP=14830 BE_IMAP=14831 BE_POP3=14832
PX_IMAP=14840 PX_POP3=14841 PX_SMTP=14842
case $STORE in postgres | bolt) ;; *)
  echo "STORE must be postgres or bolt" >&2
  exit 2
  ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. scripts/bench-common.sh
db=tohost_benchall_$$
pg=${PG_ADMIN%%/test*}/$db?sslmode=disable
bench_cleanup() {
  [ "$STORE" = postgres ] || return 0
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -h "${REDIS%:*}" -p "${REDIS#*:}" --scan --pattern "$db:*" |
    xargs -r -n 1000 redis-cli -h "${REDIS%:*}" -p "${REDIS#*:}" del >/dev/null || true
}

cmds=() # every command shown, for the list after the table
show() { # echo a command, quoted as a shell would need it, $work for the scratch folder
  local c
  c=$(printf '%q ' "$@" | sed "s|$work|\$work|g; s/ $//")
  cmds+=("$c")
  echo "+ $c"
}
run() { # echo a command, then run it
  show "$@"
  "$@"
}
start() { # echo a command, then start it in the background: its pid in $started
  show "$@"
  "$@" &
  started=$!
  pids+=("$started")
}

go build -o "$work/tohost" ./cmd/tohost
t=$work/tohost

# --- the users ---
t0=$(date +%s.%N)
run scripts/bench-users.sh "$USERS" "$work/users.csv" "$t"
retohost='BEGIN { OFS = "," } NR == 1 { print; next } { $3 = "127.0.0.1"; print }'
cmds+=("awk -F, '$retohost' \$work/users.csv >\$work/dir.csv")
echo "+ ${cmds[-1]}"
awk -F, "$retohost" "$work/users.csv" >"$work/dir.csv"
if [ "$STORE" = postgres ]; then
  run psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  store=(--postgres "$pg" --redis "redis://$REDIS" --redis-prefix "$db:")
  run "$t" directory migrate --postgres "$pg" >/dev/null
else
  store=(--data-dir "$work/data")
fi
run "$t" import "${store[@]}" --progress none "$work/dir.csv"
echo "# $USERS users written and imported in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s; $(nproc) CPUs; store $STORE"

# --- the servers ---
start "$t" directory "${store[@]}" --tcpauth-addr "$DIR" --ldap-addr "$LDAP" --ldap-anonymous-read \
  --http-addr "" --log-level warn
dir_pid=$started
waitport "${DIR#*:}"
waitport "${LDAP#*:}"
start "$t" backend --directory "$DIR" --name 127.0.0.1 --mail-dir "$work/mail" --lmtp-addr "127.0.0.1:$BE_LMTP" \
  --imap-addr "127.0.0.1:$BE_IMAP" --pop3-addr "127.0.0.1:$BE_POP3" --http-addr "" --log-level warn
be_pid=$started
start "$t" proxy --directory "$DIR" --hostname localhost --imap-addr "127.0.0.1:$PX_IMAP" --pop3-addr "127.0.0.1:$PX_POP3" \
  --smtp-addr "127.0.0.1:$PX_SMTP" --backend-imap-port "$BE_IMAP" --backend-pop3-port "$BE_POP3" \
  --backend-smtp-port "$BE_LMTP" --max-conns-per-ip 0 --http-addr "" --log-level warn
px_pid=$started
# (not the backend's IMAP port: a probe that connects and leaves makes it log a warning)
for p in $BE_LMTP $BE_POP3 $PX_IMAP $PX_POP3 $PX_SMTP; do waitport "$p"; done

echo "# warm-up: random lookups of 3 x $USERS users fill the directory's in-process cache"
run "$t" bench --mode lookup --directory "$DIR" -c 16 --depth 16 -n $((USERS * 3)) -d 0 --users "$USERS" >/dev/null
echo "# INBOX of user $FETCH_USER: $MSGS messages of ~10 KB over LMTP"
run "$t" bench --mode lmtp-deliver --directory "127.0.0.1:$BE_LMTP" -c 4 -n "$MSGS" -d 0 --first "$FETCH_USER" \
  --users 1 --tohost "" --timeout 30s

# cpu PID: clock ticks the process has used (user + system)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
rows=() failed=0
# measure LABEL CONNS COMMAND...: runs one bench, adds a table row
measure() {
  local label=$1 c=$2 line d0 p0 b0 d1 p1 b1 n rate p50 p99 p999
  shift 2
  d0=$(cpu $dir_pid) p0=$(cpu $px_pid) b0=$(cpu $be_pid)
  show "$@"
  if ! line=$("$@" 2>"$work/bench.err"); then
    failed=1
    head -5 "$work/bench.err" >&2
  fi
  d1=$(cpu $dir_pid) p1=$(cpu $px_pid) b1=$(cpu $be_pid)
  echo "$line"
  if [[ $line == *p50_ms=* ]]; then # imap-fetch: milliseconds, no p999 (its max instead)
    n=$(field fetches <<<"$line") rate=$(field rps <<<"$line")
    p50=$(field p50_ms <<<"$line") p99=$(field p99_ms <<<"$line") p999="$(field max_ms <<<"$line") (max)"
  else
    n=$(field requests <<<"$line") rate=$(field rps <<<"$line")
    p50=$(awk -v u="$(field p50_us <<<"$line")" 'BEGIN { printf "%.3f", u / 1000 }')
    p99=$(awk -v u="$(field p99_us <<<"$line")" 'BEGIN { printf "%.3f", u / 1000 }')
    p999=$(awk -v u="$(field p999_us <<<"$line")" 'BEGIN { printf "%.3f", u / 1000 }')
  fi
  per() { awk -v a="$1" -v b="$2" -v n="${n:-0}" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.0f", (b - a) / hz / n * 1e6; else print "-" }'; }
  rows+=("| $label | $c | ${rate:--} | ${p50:--} | ${p99:--} | ${p999:--} | $(field errors <<<"$line") | $(per "$d0" "$d1") | $(per "$p0" "$p1") | $(per "$b0" "$b1") | $(field client_cpu <<<"$line") |")
}

for mode in lookup check ldap-search ldap-bind imap-login pop3-login imap-fetch-envelope imap-fetch-body lmtp-deliver smtp-relay; do
  for c in $CONNS; do
    common=(-c "$c" -d "${SECS}s" --users "$USERS")
    case $mode in
    lookup | check) measure "$mode" "$c" "$t" bench --mode "$mode" --directory "$DIR" "${common[@]}" ;;
    ldap-search | ldap-bind) measure "$mode" "$c" "$t" bench --mode "$mode" --directory "$LDAP" "${common[@]}" ;;
    imap-login) measure "$mode" "$c" "$t" bench --mode "$mode" --directory "127.0.0.1:$PX_IMAP" "${common[@]}" --timeout 30s ;;
    pop3-login) measure "$mode" "$c" "$t" bench --mode "$mode" --directory "127.0.0.1:$PX_POP3" "${common[@]}" --timeout 30s ;;
    imap-fetch-*)
      measure "imap-fetch ${mode#imap-fetch-} 1:$MSGS" "$c" "$t" bench --mode imap-fetch --directory "127.0.0.1:$PX_IMAP" \
        -c "$c" -d "${SECS}s" --first "$FETCH_USER" --users 1 --messages "$MSGS" --fetch "${mode#imap-fetch-}" --timeout 60s
      ;;
    lmtp-deliver) measure "$mode" "$c" "$t" bench --mode "$mode" --directory "127.0.0.1:$BE_LMTP" "${common[@]}" --tohost "" --timeout 30s ;;
    smtp-relay) measure "$mode" "$c" "$t" bench --mode "$mode" --directory "127.0.0.1:$PX_SMTP" "${common[@]}" --timeout 30s ;;
    esac
  done
done
echo "# after the runs: VmRSS directory $(awk '/^VmRSS:/ { print $2 }' /proc/$dir_pid/status) kB," \
  "proxy $(awk '/^VmRSS:/ { print $2 }' /proc/$px_pid/status) kB, backend $(awk '/^VmRSS:/ { print $2 }' /proc/$be_pid/status) kB;" \
  "mail $(du -sk "$work/mail" | cut -f1) kB"

echo
echo "## tohost bench, $USERS users, store $STORE, ${SECS}s per run, $(nproc) CPUs (client and servers share them)"
echo
echo "Latencies in ms. CPU µs/req: CPU time (user + system) each server process used over the run, per request."
echo
echo "| mode | conns | rate/s | p50 | p99 | p999 | errors | directory CPU µs/req | proxy CPU µs/req | backend CPU µs/req | client CPU |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo
echo "Commands (\$work: the scratch folder; the daemons ran in the background):"
echo
echo '```sh'
printf '%s\n' "${cmds[@]}"
echo '```'
exit "$failed"
