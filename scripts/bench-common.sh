# Sourced by scripts/bench-proxy.sh, scripts/bench-backend.sh (after
# scripts/dovecot.sh) and scripts/bench-all.sh: a scratch folder removed on
# exit with everything the script started (its pids), its private Dovecot
# when it has one, and the helpers they use to wait for servers and sum up
# bench lines. A script may define bench_cleanup, called on exit once its
# processes are stopped, for anything else it set up.
work=$(mktemp -d)
chmod 755 "$work" # Dovecot's unprivileged processes read their config and mail under it
pids=()
cleanup() {
  if declare -F dovecot_stop >/dev/null; then dovecot_stop "$work/dovecot"; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null
  if declare -F bench_cleanup >/dev/null; then bench_cleanup || true; fi
  sleep 0.5 # Dovecot's children leave their folder
  rm -rf "$work"
}
trap cleanup EXIT

# waitport PORT: until something listens there (at most 10 s).
waitport() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; } # a key=value of a bench summary line
# mean of numbers given one per line or separated by spaces
mean() { tr ' ' '\n' | sed '/^$/d' | awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "nan" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
