#!/usr/bin/env bash
# The portal's load figure (README.md, "Load"): wrk on the verify route of a release-build portal
# (POST /api/mfa/verify, a valid code, each request another customer's), beside the same route
# answering 401 for a wrong code and a constant axum route. Not part of CI or `cargo test`.
#
#   examples/portal/load/run.sh
#   LOAD_POSTGRES_URL=postgres://root@127.0.0.1:5432/mfa_ci examples/portal/load/run.sh
#
# The second also runs the portal on PostgreSQL, and EMPTIES the schemas `mfa` and `portal` of that
# database. Knobs: LOAD_CUSTOMERS (prepared customers, default 95000; more than the valid-code run
# sends), LOAD_SECONDS (10), LOAD_THREADS (wrk -t, 2), LOAD_CONNECTIONS (wrk -c, 32), LOAD_PORT
# (18080; the baseline takes the next one). Needs wrk and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"

customers="${LOAD_CUSTOMERS:-95000}"
seconds="${LOAD_SECONDS:-10}"
threads="${LOAD_THREADS:-2}"
connections="${LOAD_CONNECTIONS:-32}"
port="${LOAD_PORT:-18080}"

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release -q -p portal --bin portal --example constant --example load_setup
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/release"
work="$target/load"
rm -rf "$work"
mkdir -p "$work"
# One sealing key for the set-up and the portal; nothing is written to a key file.
MFA_SEALING_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
export MFA_SEALING_KEY

server=""
stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop_server EXIT

wait_for() {
  for _ in $(seq 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answers at $1" >&2
  exit 1
}

results=()
# wrk LABEL URL SCRIPT [SCRIPT ARGS...]: one run, its output kept in $work/LABEL.txt.
run_wrk() {
  local label="$1" url="$2" script="$3"
  shift 3
  echo "--- $label"
  wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$here/$script" "$url" -- "$@" \
    | tee "$work/$label.txt"
  local result
  result="$(grep '^RESULT' "$work/$label.txt")"
  if grep -q 'WARNING' "$work/$label.txt" || ! grep -q 'unexpected=0 errors=0' <<<"$result"; then
    echo "$label: unexpected answers, errors or too few customers; see $work/$label.txt" >&2
    exit 1
  fi
  results+=("$label $result")
}

verify_on() {
  local name="$1" url="$2"
  echo "=== verify on $name: $customers customers"
  "$bin/examples/load_setup" accounts --database-url "$url" --count "$customers"
  "$bin/portal" --listen "127.0.0.1:$port" --database-url "$url" --danger-insecure-fast-hashes \
    --key-file "$work/unused.key" >"$work/portal-$name.log" 2>&1 &
  server=$!
  wait_for "http://127.0.0.1:$port/signin"
  "$bin/examples/load_setup" sessions --url "http://127.0.0.1:$port" --count "$customers" \
    --out "$work/sessions-$name.txt"
  # Each valid code once, from the first customer on; then wrong codes to the customers the valid
  # run did not reach, at most 4 each (so none is locked out).
  run_wrk "verify-200-$name" "http://127.0.0.1:$port/api/mfa/verify" verify.lua \
    "$work/sessions-$name.txt" valid "$threads"
  local used
  used="$(grep -o 'reached=[0-9]*' "$work/verify-200-$name.txt" | cut -d= -f2)"
  run_wrk "verify-401-$name" "http://127.0.0.1:$port/api/mfa/verify" verify.lua \
    "$work/sessions-$name.txt" wrong "$threads" "$((customers - used))"
  stop_server
}

verify_on sqlite "sqlite://$work/portal.db"
if [ -n "${LOAD_POSTGRES_URL:-}" ]; then
  verify_on postgres "$LOAD_POSTGRES_URL"
fi

echo "=== constant"
"$bin/examples/constant" "127.0.0.1:$((port + 1))" >"$work/constant.log" 2>&1 &
server=$!
wait_for "http://127.0.0.1:$((port + 1))/"
run_wrk constant "http://127.0.0.1:$((port + 1))/" constant.lua
stop_server

echo
echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, wrk -t$threads -c$connections -d${seconds}s, $customers customers"
echo
echo "| run | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
for line in "${results[@]}"; do
  read -r label _ rps p50 p99 _ <<<"$line"
  echo "| $label | ${rps#rps=} | ${p50#p50=} | ${p99#p99=} |"
done
