#!/usr/bin/env bash
# Starts the local AWS stack (moto) and the Synapse simulator seeded with a fixture, prints how to reach
# them, and writes the same settings to .stack/env (source it from another terminal) and a Python client
# config to .stack/synapseConfig. Ctrl-C (or SIGTERM) stops both.
#
#   scripts/dev-stack.sh [FIXTURE.json]      default: fixtures/sample-project.json
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fixture=${1:-$root/fixtures/sample-project.json}
state=$root/.stack
mkdir -p "$state"
"$root/scripts/venv.sh"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p synapse-sim --bin synapse-sim
target_dir=${CARGO_TARGET_DIR:-$root/target}

pids=()
cleanup() {
  # The servers, and the `sleep` processes holding their standard input open.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# Waits for a READY line in a log file written by a background process.
wait_ready() {
  local log=$1 pid=$2
  for _ in $(seq 1 600); do
    grep -q '^READY$' "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "dev-stack: $3 exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "dev-stack: $3 not ready after 60 s" >&2
  exit 1
}

# Both servers exit when their standard input closes; a pipe from `sleep` held by this script keeps it
# open until the script ends.
sleep infinity | "$root/.venv/bin/python" "$root/scripts/stack.py" --stop-on-stdin-eof > "$state/aws.log" &
pids+=($!)
wait_ready "$state/aws.log" "$!" "the local AWS stack"
grep -E '^AWS_[A-Z_]+=' "$state/aws.log" > "$state/env"
set -a; . "$state/env"; set +a

sleep infinity | "$target_dir/debug/synapse-sim" --fixture "$fixture" > "$state/sim.log" &
pids+=($!)
wait_ready "$state/sim.log" "$!" "the Synapse simulator"
grep -E '^SYNAPSE_[A-Z_]+ENDPOINT=' "$state/sim.log" >> "$state/env"
. <(grep -E '^SYNAPSE_[A-Z_]+ENDPOINT=' "$state/sim.log")
cat > "$state/synapseConfig" <<CONFIG
[endpoints]
repoEndpoint=$SYNAPSE_REPO_ENDPOINT
authEndpoint=$SYNAPSE_AUTH_ENDPOINT
fileHandleEndpoint=$SYNAPSE_FILE_ENDPOINT
portalEndpoint=${SYNAPSE_REPO_ENDPOINT%/repo/v1}/
CONFIG

cat <<TXT
Local stack is up (Ctrl-C stops it).
$(cat "$state/env")
Projects: $(grep '^SYNAPSE_PROJECT=' "$state/sim.log" | cut -d= -f2- | paste -sd',' -)
Fixture:  $fixture (users and their tokens are in it)

From another terminal:
  source .stack/env
  curl -s -H "Authorization: Bearer \$TOKEN" \$SYNAPSE_REPO_ENDPOINT/userProfile
  curl -s -X POST -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"parentId":"syn1000","includeTypes":["folder","file"]}' \$SYNAPSE_REPO_ENDPOINT/entity/children
  curl -s \${SYNAPSE_REPO_ENDPOINT%/repo/v1}/admin/requests      # the simulator's request log
  .venv/bin/python -c 'import boto3; print([b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]])'
  .venv/bin/synapse -s -c .stack/synapseConfig -p \$TOKEN migrate syn1000 7001 /tmp/index.db --dryRun --force
where TOKEN is a user's token from the fixture (the sample's migrator: migrator-token).
TXT
wait
