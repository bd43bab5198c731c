#!/usr/bin/env bash
# Measures tohost backend against Dovecot in one run, both on 127.0.0.1,
# both on Maildir with every delivery synced to disk:
#  1. IMAP on a folder of MSGS (1,000) messages of ~10 KB, delivered over
#     LMTP to one user on each server first: FETCH 1:MSGS (FLAGS ENVELOPE),
#     then FETCH 1:MSGS BODY.PEEK[], each repeated for FETCH_SECS on
#     FETCH_CONNS sessions (tohost bench --mode imap-fetch), alternating
#     between the servers, REPS times;
#  2. LMTP deliveries/s of 10 KB messages from CONNS (8) concurrent
#     senders for SECS each (tohost bench --mode lmtp-deliver), alternating,
#     REPS times.
# Dovecot (installed with apt-get when missing; scripts/dovecot.sh) serves
# IMAP and LMTP with mail_fsync = always; tohost backend --name
# backend1.example gets its users from a tohost directory on the embedded
# store holding the same USERS users of the benchmark population, and
# syncs every delivery before its 250. Deliveries go to the population's
# users whose tohost is backend1.example, on both servers. PROFILE=1 adds
# a CPU profile of the backend during one more run of each measurement
# (from its /debug/pprof).
#   scripts/bench-backend.sh   # USERS=1000 MSGS=1000 SECS=10 FETCH_SECS=10 REPS=3 CONNS=8 FETCH_CONNS=1 PROFILE=0
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000} MSGS=${MSGS:-1000} SECS=${SECS:-10} FETCH_SECS=${FETCH_SECS:-10} REPS=${REPS:-3}
CONNS=${CONNS:-8} FETCH_CONNS=${FETCH_CONNS:-1} PROFILE=${PROFILE:-0}
BACKEND=backend1.example
DIR=127.0.0.1:14720
DC_IMAP=14701 DC_LMTP=14702
BE_IMAP=14711 BE_LMTP=14712 BE_HTTP=14781

. scripts/dovecot.sh
dovecot_install

. scripts/bench-common.sh

go build -o "$work/tohost" ./cmd/tohost
t=$work/tohost

echo "# $USERS users of the benchmark population; $(nproc) CPUs; $(df -T "$work" | awk 'NR == 2 { print $2 }') file system under $work"
scripts/bench-users.sh "$USERS" "$work/users.csv" "$t"
"$t" import --data-dir "$work/data" "$work/users.csv" >/dev/null
# The folder to fetch: the first user on this backend.
first=$(awk -F, -v b="$BACKEND" 'NR > 1 && $3 == b { print NR - 2; exit }' "$work/users.csv")
fuser=$(awk -F, -v b="$BACKEND" 'NR > 1 && $3 == b { print $1; exit }' "$work/users.csv")
[ -n "$first" ] || { echo "no user of $USERS is on $BACKEND" >&2; exit 1; }

# --- Dovecot ---
dc=$work/dovecot
dovecot_start "$dc" "$work/users.csv" "$DC_IMAP" 0 "$DC_LMTP"
waitport "$DC_IMAP"
waitport "$DC_LMTP"
echo "# Dovecot $(dovecot --version | cut -d' ' -f1) on 127.0.0.1:$DC_IMAP (IMAP) and :$DC_LMTP (LMTP), Maildir, mail_fsync = always"

# --- directory and backend ---
"$t" directory --data-dir "$work/data" --tcpauth-addr "$DIR" --http-addr "" --ldap-addr "" --log-level warn &
pids+=($!)
waitport "${DIR#*:}"
"$t" backend --directory "$DIR" --name "$BACKEND" --mail-dir "$work/mail" --lmtp-addr "127.0.0.1:$BE_LMTP" \
  --imap-addr "127.0.0.1:$BE_IMAP" --http-addr "127.0.0.1:$BE_HTTP" --log-level warn &
pids+=($!)
be=$!
waitport "$BE_IMAP"
waitport "$BE_LMTP"
echo "# tohost backend --name $BACKEND on 127.0.0.1:$BE_IMAP (IMAP) and :$BE_LMTP (LMTP), Maildir, synced deliveries"

port() { # port SERVER PROTOCOL
  case $1.$2 in
  dovecot.imap) echo "$DC_IMAP" ;; dovecot.lmtp) echo "$DC_LMTP" ;;
  backend.imap) echo "$BE_IMAP" ;; backend.lmtp) echo "$BE_LMTP" ;;
  esac
}
# profile SECONDS: the backend's hottest functions over the next SECONDS.
profile() {
  timeout $(($1 + 60)) go tool pprof -top -cum -nodecount 30 "http://127.0.0.1:$BE_HTTP/debug/pprof/profile?seconds=$1" 2>/dev/null |
    sed -n '/flat%/,$p' || true
}

# --- 1. IMAP FETCH of a whole folder ---
echo "# $MSGS messages of ~10 KB for $fuser on each server, over LMTP"
for srv in dovecot backend; do
  "$t" bench --mode lmtp-deliver --directory "127.0.0.1:$(port $srv lmtp)" -c "$CONNS" -n "$MSGS" -d 0 \
    --first "$first" --users 1 --tohost "$BACKEND" --timeout 30s | sed "s/^/$srv: /"
done
for srv in dovecot backend; do # warm up (Dovecot builds its index and cache)
  "$t" bench --mode imap-fetch --directory "127.0.0.1:$(port $srv imap)" -c "$FETCH_CONNS" -d 2s \
    --first "$first" --users 1 --messages "$MSGS" --fetch both --timeout 60s >/dev/null
done
declare -A rate msgs
for fetch in envelope body; do
  echo "# FETCH 1:$MSGS $([ $fetch = envelope ] && echo '(FLAGS ENVELOPE)' || echo 'BODY.PEEK[]'), $FETCH_CONNS session(s), ${FETCH_SECS}s each, alternating"
  for _ in $(seq "$REPS"); do
    for srv in dovecot backend; do
      # A failed FETCH is counted in errors= and shown; the run goes on.
      line=$("$t" bench --mode imap-fetch --directory "127.0.0.1:$(port $srv imap)" -c "$FETCH_CONNS" -d "${FETCH_SECS}s" \
        --first "$first" --users 1 --messages "$MSGS" --fetch "$fetch" --timeout 60s) || true
      echo "$srv: $line"
      rate[$fetch.$srv]+="$(field rps <<<"$line") "
      msgs[$fetch.$srv]+="$(field msgs_s <<<"$line") "
    done
  done
  if [ "$PROFILE" = 1 ]; then
    echo "# backend CPU profile during FETCH $fetch (top 30 by cumulative time)"
    "$t" bench --mode imap-fetch --directory "127.0.0.1:$BE_IMAP" -c "$FETCH_CONNS" -d 12s \
      --first "$first" --users 1 --messages "$MSGS" --fetch "$fetch" --timeout 60s &
    bp=$!
    sleep 1
    profile 10
    wait "$bp" || true
  fi
done

# --- 2. LMTP deliveries ---
for srv in dovecot backend; do # warm up
  "$t" bench --mode lmtp-deliver --directory "127.0.0.1:$(port $srv lmtp)" -c "$CONNS" -d 2s \
    --users "$USERS" --tohost "$BACKEND" --timeout 30s >/dev/null || true
done
echo "# LMTP deliveries of 10 KB messages, $CONNS senders, ${SECS}s each, alternating"
for _ in $(seq "$REPS"); do
  for srv in dovecot backend; do
    line=$("$t" bench --mode lmtp-deliver --directory "127.0.0.1:$(port $srv lmtp)" -c "$CONNS" -d "${SECS}s" \
      --users "$USERS" --tohost "$BACKEND" --timeout 30s) || true
    echo "$srv: $line"
    rate[lmtp.$srv]+="$(field rps <<<"$line") "
  done
done
if [ "$PROFILE" = 1 ]; then
  echo "# backend CPU profile during LMTP deliveries (top 30 by cumulative time)"
  "$t" bench --mode lmtp-deliver --directory "127.0.0.1:$BE_LMTP" -c "$CONNS" -d 12s \
    --users "$USERS" --tohost "$BACKEND" --timeout 30s &
  bp=$!
  sleep 1
  profile 10
  wait "$bp" || true
fi
echo "# backend VmRSS $(awk '/^VmRSS:/ { print $2, $3 }' "/proc/$be/status")"

# --- summary ---
l_d=$(mean <<<"${rate[lmtp.dovecot]}") l_b=$(mean <<<"${rate[lmtp.backend]}")
echo
echo "== summary (means of $REPS alternating runs; backend/dovecot) =="
printf 'LMTP deliveries/s, 10 KB, %d senders   dovecot %8s  backend %8s  ratio %s  (target >= 1.0)\n' \
  "$CONNS" "$l_d" "$l_b" "$(ratio "$l_b" "$l_d")"
for fetch in envelope body; do
  what='(FLAGS ENVELOPE)'
  [ $fetch = body ] && what='BODY.PEEK[]     '
  f_d=$(mean <<<"${rate[$fetch.dovecot]}") f_b=$(mean <<<"${rate[$fetch.backend]}")
  m_d=$(mean <<<"${msgs[$fetch.dovecot]}") m_b=$(mean <<<"${msgs[$fetch.backend]}")
  printf 'FETCH 1:%d %s fetches/s  dovecot %8s  backend %8s  ratio %s  (target >= 0.5); messages/s %s / %s\n' \
    "$MSGS" "$what" "$f_d" "$f_b" "$(ratio "$f_b" "$f_d")" "$m_d" "$m_b"
done
