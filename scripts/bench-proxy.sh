#!/usr/bin/env bash
# Measures tohost proxy against Dovecot in one run, all on 127.0.0.1:
#  1. IMAP and POP3 logins/s (connect, greeting, login, logout) at 16
#     connections through the proxy and directly to Dovecot, alternating;
#  2. one ~100 MB message fetched with curl through the proxy and directly,
#     alternating;
#  3. resident memory per idle proxied IMAP session with HOLD sessions held
#     through the proxy to the bench's own IMAP stub (tohost bench --mode
#     imap-server; Dovecot would need a process per session).
# Dovecot (installed with apt-get when missing) runs privately from a
# temporary folder (scripts/dovecot.sh): IMAP and POP3 on Maildir,
# mail_fsync = always, the benchmark population in a passwd-file with their
# {SSHA} hashes. The directory runs on the embedded store with the same
# users, their tohost set to 127.0.0.1; the proxy's --backend-imap-port
# and --backend-pop3-port say which ports (Dovecot's, or for part 3 the
# stub's), so one tohost serves both protocols.
#   scripts/bench-proxy.sh     # USERS=10000 SECS=10 REPS=3 FETCHES=5 HOLD=10000
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-10000} SECS=${SECS:-10} REPS=${REPS:-3} FETCHES=${FETCHES:-5} HOLD=${HOLD:-10000}
CONNS=16
DIR=127.0.0.1:14620
DC_IMAP=14600 DC_POP3=14610
PX_IMAP=14643 PX_POP3=14611 PX_HTTP=14681
STUB=14640

for tool in curl awk; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
. scripts/dovecot.sh
dovecot_install
# Each held session costs the proxy two sockets (the relay holds no pipe
# while it waits): as many as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. scripts/bench-common.sh
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
metric() { curl -s --max-time 10 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { printf "%.0f\n", $2 }'; }

go build -o "$work/tohost" ./cmd/tohost
t=$work/tohost

echo "# $USERS users of the benchmark population"
scripts/bench-users.sh "$USERS" "$work/users.csv" "$t"
awk -F, 'BEGIN { OFS = "," } NR == 1 { print; next } { $3 = "127.0.0.1"; print }' "$work/users.csv" >"$work/dir.csv"
"$t" import --data-dir "$work/data" "$work/dir.csv" >/dev/null

# --- Dovecot ---
dc=$work/dovecot
dovecot_start "$dc" "$work/users.csv" "$DC_IMAP" "$DC_POP3"
waitport "$DC_IMAP"
waitport "$DC_POP3"
echo "# $(dovecot --version | cut -d' ' -f1) on 127.0.0.1:$DC_IMAP (IMAP) and :$DC_POP3 (POP3), Maildir, mail_fsync = always"

# --- directory and proxy ---
"$t" directory --data-dir "$work/data" --tcpauth-addr "$DIR" --http-addr "" --ldap-addr "" --log-level warn &
pids+=($!)
waitport "${DIR#*:}"
"$t" proxy --directory "$DIR" --imap-addr "127.0.0.1:$PX_IMAP" --pop3-addr "127.0.0.1:$PX_POP3" \
  --http-addr "127.0.0.1:$PX_HTTP" --backend-imap-port "$DC_IMAP" --backend-pop3-port "$DC_POP3" \
  --max-conns-per-ip 0 --log-level warn &
pids+=($!)
waitport "$PX_IMAP"

# --- 1. logins/s ---
declare -A rps
for mode in imap-login pop3-login; do
  px=$PX_IMAP direct=$DC_IMAP
  [ "$mode" = pop3-login ] && px=$PX_POP3 direct=$DC_POP3
  "$t" bench --mode "$mode" --directory "127.0.0.1:$px" -c "$CONNS" -d 2s --users "$USERS" --timeout 30s >/dev/null || true # warm up
  echo "# $mode, $CONNS connections, ${SECS}s each: direct to Dovecot, then through the proxy"
  for _ in $(seq "$REPS"); do
    for via in direct proxy; do
      port=$direct
      [ "$via" = proxy ] && port=$px
      # A failed session is counted in errors= and shown; the run goes on.
      line=$("$t" bench --mode "$mode" --directory "127.0.0.1:$port" -c "$CONNS" -d "${SECS}s" --users "$USERS" --timeout 30s) || true
      echo "$via: $line"
      rps[$mode.$via]+="$(field rps <<<"$line") "
    done
  done
done

# --- 2. a ~100 MB message ---
user=$(awk -F, 'NR == 2 { print $1 }' "$work/users.csv")
pass=pw-0000000
box=$dc/mail/${user#*@}/${user%@*}
mkdir -p "$box/new" "$box/cur" "$box/tmp"
msg=$box/new/$(date +%s).M1P$$.bench
{
  printf 'From: bench@example.com\nTo: %s\nSubject: 100 MB\nMessage-ID: <big@bench.example>\nDate: %s\nMIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n' "$user" "$(date -R)"
  head -c 76800000 /dev/urandom | base64 -w 76
} >"$msg"
chown -R mail:mail "$dc/mail"
size=$(stat -c %s "$msg")
fetch() { curl -s -o /dev/null -w '%{speed_download}' "imap://127.0.0.1:$1/INBOX;UID=1" -u "$user:$pass" || echo 0; }
echo "# one message of $size bytes (on disk, LF line ends), FETCH of UID 1 with curl: direct, then through the proxy (bytes/s)"
fetch "$DC_IMAP" >/dev/null # Dovecot indexes the mailbox
declare -A speed
for _ in $(seq "$FETCHES"); do
  for via in direct proxy; do
    port=$DC_IMAP
    [ "$via" = proxy ] && port=$PX_IMAP
    s=$(fetch "$port")
    echo "$via: $s"
    speed[$via]+="$s "
  done
done

# --- 3. memory per idle proxied IMAP session ---
kill "${pids[-1]}" # the proxy in front of Dovecot
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'
limit=$(ulimit -n)
per=$(((limit - 300) / 2)) # sessions one proxy can hold within its descriptors
nproxy=$(((HOLD + per - 1) / per))
each=$(((HOLD + nproxy - 1) / nproxy))
echo "# idle IMAP sessions through the proxy to the IMAP stub: $HOLD in all, $nproxy proxy process(es) of $each (open files limit $limit; 2 per session)"
"$t" bench --mode imap-server --listen "127.0.0.1:$STUB" 2>/dev/null &
pids+=($!)
waitport "$STUB"
hp=() hport=() hhttp=()
for k in $(seq 0 $((nproxy - 1))); do
  port=$((14650 + k)) http=$((14690 + k))
  "$t" proxy --directory "$DIR" --imap-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$http" \
    --backend-imap-port "$STUB" --max-conns-per-ip 0 --max-conns $((each + 100)) --log-level warn &
  pids+=($!)
  hp+=($!) hport+=("$port") hhttp+=("$http")
done
for port in "${hport[@]}"; do waitport "$port"; done
sleep 2
before=() heap0=$(metric "${hhttp[0]}" go_memstats_heap_inuse_bytes) stack0=$(metric "${hhttp[0]}" go_memstats_stack_inuse_bytes)
for p in "${hp[@]}"; do before+=("$(rss_kb "$p")"); done
holders=()
for k in $(seq 0 $((nproxy - 1))); do
  "$t" bench --mode imap-hold --directory "127.0.0.1:${hport[k]}" -n "$each" -c "$CONNS" -d 600s \
    --users "$USERS" --first $((k * each % USERS)) >"$work/hold$k.out" 2>"$work/hold$k.err" &
  holders+=($!)
  pids+=($!)
done
for k in $(seq 0 $((nproxy - 1))); do
  for _ in $(seq 600); do # at most 5 minutes
    grep -q "sessions up" "$work/hold$k.err" && break
    kill -0 "${holders[k]}" 2>/dev/null || break
    sleep 0.5
  done
  cat "$work/hold$k.err"
done
sleep 10 # settle
after=() up=0
for p in "${hp[@]}"; do after+=("$(rss_kb "$p")"); done
heap1=$(metric "${hhttp[0]}" go_memstats_heap_inuse_bytes) stack1=$(metric "${hhttp[0]}" go_memstats_stack_inuse_bytes)
gor=$(metric "${hhttp[0]}" go_goroutines)
fds=$(ls "/proc/${hp[0]}/fd" | wc -l)
pipes=$(find "/proc/${hp[0]}/fd" -lname 'pipe:*' | wc -l)
echo "# proxy 1 of $nproxy with its sessions up: $gor goroutines, $fds open files of which $pipes pipes; heap in use by allocation site:"
timeout 60 go tool pprof -top -sample_index=inuse_space "http://127.0.0.1:${hhttp[0]}/debug/pprof/heap" 2>/dev/null | sed -n '/flat%/,$p' | head -12 || true
echo "# stopping the holders (each checks its sessions with a NOOP)"
for k in $(seq 0 $((nproxy - 1))); do
  kill -TERM "${holders[k]}"
  for _ in $(seq 120); do # at most a minute
    kill -0 "${holders[k]}" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL "${holders[k]}" 2>/dev/null || true
  wait "${holders[k]}" || true
  cat "$work/hold$k.out"
  a=$(field alive <"$work/hold$k.out")
  up=$((up + ${a:-0}))
done
delta=0
for k in $(seq 0 $((nproxy - 1))); do
  echo "proxy $((k + 1)): VmRSS ${before[k]} kB before, ${after[k]} kB with $each sessions up"
  delta=$((delta + after[k] - before[k]))
done

# --- summary ---
summ() { mean <<<"$(tr ' ' '\n' <<<"${rps[$1]}" | sed '/^$/d')"; }
li_d=$(summ imap-login.direct) li_p=$(summ imap-login.proxy)
lp_d=$(summ pop3-login.direct) lp_p=$(summ pop3-login.proxy)
sp_d=$(tr ' ' '\n' <<<"${speed[direct]}" | sed '/^$/d' | mean) sp_p=$(tr ' ' '\n' <<<"${speed[proxy]}" | sed '/^$/d' | mean)
per_kib=$(awk -v d="$delta" -v n="$up" 'BEGIN { if (n > 0) printf "%.1f", d / n; else print "nan" }')
echo
echo "== summary (means of the alternating runs) =="
printf 'imap logins/s   direct %8s  proxy %8s  proxy/direct %s  (target >= 0.5)\n' "$li_d" "$li_p" "$(ratio "$li_p" "$li_d")"
printf 'pop3 logins/s   direct %8s  proxy %8s  proxy/direct %s\n' "$lp_d" "$lp_p" "$(ratio "$lp_p" "$lp_d")"
printf '%s-byte fetch MB/s  direct %.1f  proxy %.1f  proxy/direct %s  (target >= 0.9)\n' "$size" \
  "$(awk -v s="$sp_d" 'BEGIN { print s / 1e6 }')" "$(awk -v s="$sp_p" 'BEGIN { print s / 1e6 }')" "$(ratio "$sp_p" "$sp_d")"
printf 'idle sessions   %d up through %d proxy process(es); VmRSS grew by %d kB in all: %s KiB per session  (target <= 64)\n' \
  "$up" "$nproxy" "$delta" "$per_kib"
printf 'proxy 1 (%d sessions): heap in use %d -> %d bytes (%s KiB/session), stacks %d -> %d bytes (%s KiB/session)\n' "$each" \
  "$heap0" "$heap1" "$(awk -v a="$heap0" -v b="$heap1" -v n="$each" 'BEGIN { printf "%.1f", (b - a) / n / 1024 }')" \
  "$stack0" "$stack1" "$(awk -v a="$stack0" -v b="$stack1" -v n="$each" 'BEGIN { printf "%.1f", (b - a) / n / 1024 }')"
