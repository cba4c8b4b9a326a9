#!/usr/bin/env bash
# `sam build --beta-features` of every function, as a deployment would (run by `make sam-build`, part
# of `make test`). BuildMethod rust-cargolambda runs `cargo lambda build --release` per function.
#
# The template's functions default to arm64; this machine's toolchain has only the x86_64 target and
# no zig, so the check builds for x86_64 with cargo as the compiler. Deploying from a machine with the
# aarch64 target (or zig) builds arm64 with plain `sam build --beta-features`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export CARGO_LAMBDA_COMPILER=${CARGO_LAMBDA_COMPILER:-cargo}
cd "$root"
sam build --beta-features --parameter-overrides Architecture=x86_64 "$@"
for function in IndexFunction StartCopyFunction CopyPartsFunction CompleteFunction ReportFunction; do
  bootstrap=".aws-sam/build/$function/bootstrap"
  if [ ! -x "$bootstrap" ]; then
    echo "sam-build: $bootstrap was not built" >&2
    exit 1
  fi
done
echo "sam-build: every function built ($(du -ch .aws-sam/build/*/bootstrap | tail -1 | cut -f1) of bootstraps)"
