#!/usr/bin/env bash
# `make demo`: the whole product on this machine, as a user would drive it.
#
#   1. installs the Python environment (moto, boto3) and builds every binary;
#   2. starts the local deployment (`synmigrate-local up`: moto with Step Functions, DynamoDB, S3 and
#      SQS, the real Lambda function binaries, the Synapse simulator seeded with the sample project);
#   3. `synmigrate start --verify bytes` migrates the project into destination 7001 (each copy read
#      back and its MD5 compared before its entity is updated), `synmigrate watch` shows the
#      progress bar, `synmigrate report` prints the table and then one JSON line of counts per status;
#   4. starts a second execution of the same migration and shows that nothing is redone
#      (its JSON line says MIGRATED 0);
#   5. `synmigrate verify` proves every migrated file's copy again from S3 alone.
# The local deployment is stopped on every way out (success, failure, Ctrl-C).
#
#   scripts/demo.sh [FIXTURE.json]        default: fixtures/sample-project.json
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fixture=${1:-$root/fixtures/sample-project.json}
state=$root/.stack
mkdir -p "$state"

step() { printf '\n==> %s\n' "$*"; }

step "Python environment (.venv: moto, boto3, synapseclient)"
scripts/venv.sh

step "Building the binaries (functions, local deployment, CLI)"
cargo build --workspace --bins
bin=${CARGO_TARGET_DIR:-$root/target}/debug

local_pid=
cleanup() {
  if [[ -n $local_pid ]] && kill -0 "$local_pid" 2>/dev/null; then
    echo "==> Stopping the local deployment"
    # End of its standard input is its signal to stop (and lets its stdin reader finish); SIGTERM
    # if it is still there after 30 s.
    if [[ -n ${keep_open:-} ]]; then exec {keep_open}>&-; fi
    for _ in $(seq 1 300); do
      kill -0 "$local_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$local_pid" 2>/dev/null || true
    wait "$local_pid" 2>/dev/null || true
  fi
  rm -f "${fifo:-}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Starting the local deployment with $(basename "$fixture")"
log=$state/local.log
# synmigrate-local stops when its standard input closes. Its input is a FIFO whose only writer is
# this script, so it stops when the demo ends, even if the demo is killed.
fifo=$state/local.stdin
rm -f "$fifo"
mkfifo "$fifo"
"$bin/synmigrate-local" up --fixture "$fixture" --env-file "$state/env" <"$fifo" >"$log" 2>"$state/local.err" &
local_pid=$!
exec {keep_open}>"$fifo"
for _ in $(seq 1 1800); do
  grep -q '^READY$' "$log" 2>/dev/null && break
  if ! kill -0 "$local_pid" 2>/dev/null; then
    cat "$log" "$state/local.err" >&2
    echo "demo: the local deployment exited before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
grep -q '^READY$' "$log" || { echo "demo: the local deployment is not ready after 3 minutes" >&2; exit 1; }

set -a
# shellcheck source=/dev/null
. "$state/env"
set +a
project=$SYNAPSE_PROJECT
destination=${SYNAPSE_DESTINATION:-7001}
echo "Project $project, destination storage location $destination (settings in .stack/env)"

failures=0
# One migration run: start, watch, report as a table, then the JSON line. Sets $run_json.
migrate() {
  local arn run
  arn=$("$bin/synmigrate" start --project "$project" --destination "$destination" "$@")
  run=${arn##*:}
  echo "Execution: $arn"
  step "synmigrate watch --execution …:$run"
  "$bin/synmigrate" watch --execution "$arn" || failures=1
  step "synmigrate report --project $project --destination $destination --run $run --format table"
  "$bin/synmigrate" report --project "$project" --destination "$destination" --run "$run" --format table ||
    failures=1
  step "synmigrate report --project $project --destination $destination --run $run --format json"
  run_json=$("$bin/synmigrate" report --project "$project" --destination "$destination" --run "$run" \
    --format json) || failures=1
  echo "$run_json"
}

step "First run: synmigrate start --project $project --destination $destination --verify bytes"
migrate --verify bytes
step "Second run (--window 0 makes it a new execution): nothing should be redone"
migrate --window 0
migrated_again=$(printf '%s' "$run_json" |
  .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["counts"]["MIGRATED"])')

step "synmigrate status --project $project --destination $destination"
"$bin/synmigrate" status --project "$project" --destination "$destination"

step "synmigrate verify --project $project --destination $destination --level bytes"
"$bin/synmigrate" verify --project "$project" --destination "$destination" --level bytes ||
  failures=1

if [[ $migrated_again != 0 ]]; then
  echo "demo: the second run migrated $migrated_again files again" >&2
  exit 1
fi
echo
echo "The second run migrated nothing: every file was already in storage location $destination."
exit "$failures"
