#!/usr/bin/env bash
# requirements.lock: the whole dependency tree of kloudctl and its dev tools, pinned with
# hashes, resolved by uv from pyproject.toml. `make lock` writes it; `--check` only says
# whether the lock still satisfies pyproject.toml's pins (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
lock=requirements.lock

if [[ ${1:-} == --check ]]; then
  [[ -f $lock ]] || { echo "lock: $lock is missing" >&2; exit 1; }
  # Every direct pin of pyproject.toml must appear, at that version, in the lock.
  python3 - "$lock" <<'PY'
import re, sys, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
pins = list(project["dependencies"])
for extra in project.get("optional-dependencies", {}).values():
    pins += extra
locked = {}
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
    if m:
        locked[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
bad = []
for pin in pins:
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", pin)
    if not m:
        bad.append(f"{pin} (not pinned with ==)")
        continue
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    if locked.get(name) != m.group(3):
        bad.append(f"{pin} (lock has {locked.get(name, 'nothing')})")
if bad:
    print("lock: requirements.lock does not match pyproject.toml: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
  exit 0
fi

uv=.venv/bin/uv
[[ -x $uv ]] || { echo "lock: $uv is missing: run 'make venv' first" >&2; exit 1; }
# uv reads the system's certificate store (the package index may sit behind a local CA).
UV_NATIVE_TLS=1 "$uv" pip compile pyproject.toml --extra dev --generate-hashes --universal \
  --python-version 3.11 --custom-compile-command "make lock" -o "$lock" -q
echo "lock: $lock written ($(grep -c '^[A-Za-z0-9].*==' "$lock") packages)"
