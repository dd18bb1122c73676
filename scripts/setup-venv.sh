#!/usr/bin/env bash
# The virtualenv: exactly the locked dependency tree (requirements.lock, every package pinned
# with its hashes), then kloudctl itself, editable, without dependencies. Reinstalled only
# when pyproject.toml or the lock changes. `make lock` refreshes the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.kloudctl-stamp
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
# A lock older than pyproject.toml would install something else than what pyproject.toml pins.
if ! scripts/lock.sh --check; then
  echo "setup: requirements.lock does not match pyproject.toml: run 'make lock' and commit it" >&2
  exit 1
fi
echo "setup: creating .venv with the locked dependencies (requirements.lock)"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
# --require-hashes: a package whose file differs from the one locked is refused.
.venv/bin/pip install -q --require-hashes --no-deps -r requirements.lock
# (setuptools warns about editable installs at length; show its output only on failure)
out=$(.venv/bin/pip install -q --no-deps --no-build-isolation -e . 2>&1) || {
  echo "$out" >&2
  exit 1
}
.venv/bin/pip check >/dev/null || { .venv/bin/pip check >&2; exit 1; }
echo "$want" > "$stamp"
