#!/usr/bin/env bash
# Creates (or refreshes) the project's Python virtual environment in .venv with the pinned tools.
# Re-running is cheap: it reinstalls only when scripts/requirements.txt changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/scripts/requirements.txt"
stamp="$venv/.requirements.sha256"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3

want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
echo "venv: installing pinned Python tools into .venv" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
