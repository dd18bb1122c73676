#!/usr/bin/env bash
# The `tools` step: Go tools we need at pinned versions, built from the Go module proxy into
# the project-local .tools/bin when no usable version is already on PATH. Builds are cached
# per version under ${KLOUDCTL_TOOLS_CACHE:-~/.cache/kloudctl/tools} so a fresh clone on the
# same machine links them instead of rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.tools/bin
cache=${KLOUDCTL_TOOLS_CACHE:-$HOME/.cache/kloudctl/tools}
mkdir -p "$bin" "$cache"

say() { echo "tools: $*"; }

# go_tool NAME VERSION PACKAGE VERSION_REGEX
#   Uses NAME from PATH when its `version` output matches VERSION_REGEX; otherwise builds
#   PACKAGE@vVERSION once into the cache and links it into .tools/bin.
go_tool() {
  local name=$1 version=$2 package=$3 usable=$4
  local found
  found=$(PATH=${PATH//$bin:/} command -v "$name" || true)
  if [[ -n $found ]] && "$found" version 2>/dev/null | grep -Eq "$usable"; then
    ln -sf "$found" "$bin/$name"
    return
  fi
  local dest=$cache/$name-$version
  if [[ ! -x $dest/$name ]]; then
    say "building $name $version from the Go module proxy (once; cached in $dest)"
    mkdir -p "$dest.tmp"
    GOBIN=$dest.tmp GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install -trimpath "$package@v$version"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
  fi
  ln -sf "$dest/$name" "$bin/$name"
}

# Tool list: later issues add their tools below.
