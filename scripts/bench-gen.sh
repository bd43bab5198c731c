# Sourced by the bench scripts that need the benchmark population as CSV,
# before they change folder (GEN may be relative to the caller's):
# GEN (optional) is the folder of a copy of the benchmark generator, a Go
# module whose ./gen command writes the same population (go run ./gen -n N
# -format csv|ldif -o FILE); without it scripts/bench-users.sh writes the CSV.
GEN=${GEN:-}
if [ -n "$GEN" ]; then
  [ -d "$GEN/gen" ] || { echo "$0: GEN=$GEN has no gen/ (the generator's folder, or unset GEN)" >&2; exit 2; }
  GEN=$(cd "$GEN" && pwd)
fi

# users_csv N FILE TOHOST: the population's first N users as CSV in FILE
# (TOHOST: a built tohost, used without GEN); run from the repository root.
users_csv() {
  if [ -n "$GEN" ]; then
    (cd "$GEN" && go run ./gen -n "$1" -format csv -o "$2")
  else
    scripts/bench-users.sh "$1" "$2" "$3"
  fi
}
