# synmigrate — the README's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
NEXTEST_PROFILE ?= $(if $(CI),ci,default)

.PHONY: test venv sam-build template-check fmt-check clippy tests stack clean-venv demo bench scale

## test: install what the tests need, then the template checks, rustfmt check, clippy -D warnings, and every test
test: venv template-check fmt-check clippy tests sam-build

## venv: the project's Python environment (.venv) with the pinned moto, boto3 and synapseclient
venv:
	@scripts/venv.sh

## sam-build: sam build --beta-features of every function (x86_64 here; see the script)
sam-build: venv
	@scripts/sam-build.sh

## template-check: sam validate --lint, cfn-lint and the project's IAM/table/ASL rules, offline
template-check: venv
	@scripts/check-template.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

tests:
	$(CARGO) build --workspace --bins --locked  # the end-to-end test runs the function binaries
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --locked --profile $(NEXTEST_PROFILE) --no-tests=fail; \
	else \
	  $(CARGO) test --workspace --locked; \
	fi
	$(CARGO) test --workspace --locked --doc

## demo: the local deployment with the sample project; migrate it with the CLI (progress bar, report,
##       one JSON line of counts per run), then run again to show nothing is redone
demo:
	@scripts/demo.sh

## bench: the official client against synmigrate (state machine and in-process, both engines) on one
##        throttled simulator, for the sample project and BENCH_FILES generated small files (default
##        2000; 0: the sample only; BENCH_TOOLS=official,sfn-synapse,... picks tools); prints
##        markdown tables. Not part of `make test`.
bench: venv
	$(CARGO) build --workspace --bins --locked  # the state machine runs the function binaries
	$(CARGO) run --locked -p synmigrate-bench --bin synmigrate-bench

## scale: each stage as the real function process on generated projects of SCALE_FILES tiny files
##        (default 10000,30000; a fresh deployment each): wall time, peak RSS, Synapse calls,
##        DynamoDB and S3 requests per stage, projected to 10^6 and 10^7 files, 1 TB and 100 TB
##        (hours, transitions, GB-s, requests, dollars); then Plan and Report alone on a state
##        table of SCALE_SEEDED_FILES items (default 100000); prints markdown tables. Not part of `make test`.
scale: venv
	$(CARGO) build --workspace --bins --locked  # the stages run the function binaries
	$(CARGO) run --locked -p synmigrate-bench --bin synmigrate-scale

## stack: the local AWS stack and the Synapse simulator with the sample project (Ctrl-C stops both)
stack: venv
	@scripts/dev-stack.sh

clean-venv:
	rm -rf .venv
