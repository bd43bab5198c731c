#!/usr/bin/env bash
# Measures LMTP deliveries/s through three tohost backends sharing one mail
# directory (--shared-mail-dir) against one backend alone on its own, all
# on 127.0.0.1, every delivery synced to disk before its 250:
#  - alone: tohost backend --name backend1.example, CONNS (9) senders
#    (tohost bench --mode lmtp-deliver) for SECS each;
#  - shared: backend1-3.example on one mail directory (backend2 and 3 with
#    --peer backend1.example, so they take its users), one bench per
#    backend with CONNS/3 senders each, run at once; their rates summed.
# The two alternate, REPS times. Deliveries go to the benchmark
# population's users whose tohost is backend1.example (USERS users in a
# tohost directory on the embedded store).
#   scripts/bench-shared.sh   # USERS=1000 SECS=10 REPS=3 CONNS=9
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000} SECS=${SECS:-10} REPS=${REPS:-3} CONNS=${CONNS:-9}
BACKEND=backend1.example
DIR=127.0.0.1:14820
ALONE=14810 SHARED=(14811 14812 14813)

. scripts/bench-common.sh

go build -o "$work/tohost" ./cmd/tohost
t=$work/tohost

echo "# $USERS users of the benchmark population; $(nproc) CPUs; $(df -T "$work" | awk 'NR == 2 { print $2 }') file system under $work"
scripts/bench-users.sh "$USERS" "$work/users.csv" "$t"
"$t" import --data-dir "$work/data" "$work/users.csv" >/dev/null
"$t" directory --data-dir "$work/data" --tcpauth-addr "$DIR" --http-addr "" --ldap-addr "" --log-level warn &
pids+=($!)
waitport "${DIR#*:}"

"$t" backend --directory "$DIR" --name "$BACKEND" --mail-dir "$work/alone" --lmtp-addr "127.0.0.1:$ALONE" \
  --http-addr "" --log-level warn &
pids+=($!)
waitport "$ALONE"
for i in 0 1 2; do
  "$t" backend --directory "$DIR" --name "backend$((i + 1)).example" --peer "$BACKEND" --mail-dir "$work/shared" \
    --shared-mail-dir --lmtp-addr "127.0.0.1:${SHARED[$i]}" --http-addr "" --log-level warn &
  pids+=($!)
  waitport "${SHARED[$i]}"
done
echo "# alone: one backend on 127.0.0.1:$ALONE; shared: three on 127.0.0.1:${SHARED[*]} with --shared-mail-dir on one folder"

deliver() { # deliver PORT CONNS DURATION
  "$t" bench --mode lmtp-deliver --directory "127.0.0.1:$1" -c "$2" -d "$3" --users "$USERS" --tohost "$BACKEND" --timeout 30s
}
# shared DURATION: the three benches at once (run in $(...), so that wait
# waits for them alone); prints their summed rate, their lines on stderr.
shared() {
  local outs=()
  for i in 0 1 2; do
    outs+=("$work/out.$i")
    deliver "${SHARED[$i]}" $((CONNS / 3)) "$1" >"$work/out.$i" &
  done
  wait
  for o in "${outs[@]}"; do echo "  $(cat "$o")" >&2; done
  cat "${outs[@]}" | field rps | awk '{ s += $1 } END { printf "%.1f", s }'
}

deliver "$ALONE" "$CONNS" 2s >/dev/null || true # warm up
(shared 2s) >/dev/null 2>&1 || true
echo "# LMTP deliveries of 10 KB messages, $CONNS senders in all, ${SECS}s each, alternating"
declare -A rate
for _ in $(seq "$REPS"); do
  line=$(deliver "$ALONE" "$CONNS" "${SECS}s") || true
  echo "alone: $line"
  rate[alone]+="$(field rps <<<"$line") "
  sum=$(shared "${SECS}s")
  echo "shared: rps=$sum (sum of the three)"
  rate[shared]+="$sum "
done

a=$(mean <<<"${rate[alone]}") s=$(mean <<<"${rate[shared]}")
echo
echo "== summary (means of $REPS alternating runs) =="
printf 'LMTP deliveries/s, 10 KB, %d senders   one backend alone %8s  three shared %8s  ratio %s\n' "$CONNS" "$a" "$s" "$(ratio "$s" "$a")"
