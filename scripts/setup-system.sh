#!/usr/bin/env bash
# System set-up: Debian packages and podman's configuration. Idempotent; a no-op when all
# is in place. Needs root for changes; without root it only says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(grep -v '^\s*#' scripts/apt-packages.txt | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
  else
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [[ $(id -u) -eq 0 ]] && ! cmp -s scripts/containers.conf /etc/containers/containers.conf; then
  echo "setup: installing /etc/containers/containers.conf (runc, cgroupfs, no default ulimits)"
  install -D -m 0644 scripts/containers.conf /etc/containers/containers.conf
fi
