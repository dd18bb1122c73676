#!/usr/bin/env bash
# The `tools` step: Go tools we need at pinned versions, built from the Go module proxy into
# the project-local .tools/bin when no usable version is already on PATH. Builds are cached
# per version under ${KLOUDCTL_TOOLS_CACHE:-~/.cache/kloudctl/tools} so a fresh clone on the
# same machine links them instead of rebuilding. Prints nothing when everything is in place.
#
# Each tool is pinned by a small Go module of ours under scripts/tools/NAME/ (go.mod + go.sum
# committed), built with `go build` there: `go install PKG@VERSION` is not usable here (the
# proxy refuses the @v/list look-up it makes, and Pulumi's pkg/go.mod has replace directives).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.tools/bin
cache=${KLOUDCTL_TOOLS_CACHE:-$HOME/.cache/kloudctl/tools}
mkdir -p "$bin" "$cache"

say() { echo "tools: $*"; }
die() {
  echo "tools: ERROR: $*" >&2
  exit 1
}

# need_go WHAT: only called when something must be built, so a machine whose tools are all
# cached or on PATH does not need Go.
need_go() {
  command -v go >/dev/null 2>&1 ||
    die "'go' is not on PATH, and $1 must be built from the Go module proxy." \
      "Install Go >= $(go_directive "$2") (https://go.dev/doc/install, or Debian's golang-go if recent enough) and run 'make tools' again."
}

# go_directive MODDIR: the Go version MODDIR/go.mod asks for.
go_directive() { awk '$1 == "go" { print $2; exit }' "$1/go.mod"; }

# mod_version MODDIR MODULE: the version of MODULE that MODDIR/go.mod requires.
mod_version() {
  local v
  v=$(awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod")
  [[ -n $v ]] || die "$1/go.mod does not require $2"
  echo "$v"
}

# on_path NAME: the absolute path of NAME from PATH, ignoring our own .tools/bin however PATH
# names it (so we never link .tools/bin/NAME to itself).
on_path() {
  local dirs dir abs own
  own=$(cd "$bin" && pwd -P)
  IFS=: read -ra dirs <<<"$PATH"
  for dir in "${dirs[@]}"; do
    [[ -n $dir && -f $dir/$1 && -x $dir/$1 ]] || continue
    abs=$(cd "$dir" && pwd -P) || continue
    [[ $abs != "$own" ]] || continue
    echo "$abs/$1"
    return
  done
}

# link TARGET NAME: point .tools/bin/NAME at TARGET (nothing to do when it already does).
link() {
  [[ -L $bin/$2 && $(readlink "$bin/$2") == "$1" ]] || ln -sfn "$1" "$bin/$2"
}

# usable BINARY REGEX VERSION_ARGS...: does `BINARY VERSION_ARGS` print a version matching REGEX?
usable() {
  local binary=$1 regex=$2
  shift 2
  "$binary" "$@" 2>/dev/null | grep -Eq "$regex"
}

# go_build MODDIR OUT PACKAGE [GO BUILD FLAGS...]: build PACKAGE within our pinning module.
go_build() {
  local moddir=$1 out=$2 package=$3
  shift 3
  (cd "$moddir" && GOWORK=off GOFLAGS='-buildvcs=false -mod=readonly' CGO_ENABLED=0 \
    go build -trimpath "$@" -o "$out" "$package") || die "building $package failed (see above)"
}

# go_tool NAME MODULE PACKAGE USABLE_REGEX [VERSION_ARGS...]
#   Uses NAME from PATH when `NAME VERSION_ARGS` (default: `version`) matches USABLE_REGEX;
#   otherwise builds PACKAGE at the version of MODULE that scripts/tools/NAME/go.mod pins,
#   once, into the cache, checks that the result runs and reports a usable version, and
#   links it into .tools/bin.
go_tool() {
  local name=$1 module=$2 package=$3 regex=$4
  shift 4
  local vargs=("$@")
  ((${#vargs[@]})) || vargs=(version)
  local found
  found=$(on_path "$name")
  if [[ -n $found ]] && usable "$found" "$regex" "${vargs[@]}"; then
    link "$found" "$name"
    return
  fi
  local moddir=$root/scripts/tools/$name version
  version=$(mod_version "$moddir" "$module")
  local dest=$cache/$name-$version
  if [[ ! -x $dest/$name ]]; then
    need_go "$name $version" "$moddir"
    say "building $name $version (once; cached in $dest)"
    local start=$SECONDS
    rm -rf "$dest.tmp"
    go_build "$moddir" "$dest.tmp/$name" "$package"
    usable "$dest.tmp/$name" "$regex" "${vargs[@]}" ||
      die "the built $name does not report a usable version: $("$dest.tmp/$name" "${vargs[@]}" 2>&1 | head -1)"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    say "built $name $version in $((SECONDS - start))s"
  fi
  link "$dest/$name" "$name"
}

# restic >= 0.18: --json errors, exit codes 10/11/12, --stdin-from-command (Debian's 0.14 is not).
go_tool restic github.com/restic/restic github.com/restic/restic/cmd/restic \
  '^restic (0\.(1[89]|[2-9][0-9])|[1-9][0-9]*)\.'
# rest-server: the peer cabinet's --append-only --private-repos backend.
go_tool rest-server github.com/restic/rest-server github.com/restic/rest-server/cmd/rest-server \
  '^rest-server (version )?(rest-server )?v?(0\.(1[3-9]|[2-9][0-9])|[1-9][0-9]*)\.' --version

# wireguard-go: the userspace WireGuard for cabinets and test cabinets without the kernel module
# (the federation mesh); the federation_mesh role ships this binary, like the replication roles
# ship restic.
go_tool wireguard-go golang.zx2c4.com/wireguard golang.zx2c4.com/wireguard \
  '^wireguard-go v?0\.0\.[0-9]{8}' --version

# pulumi_tool: the Pulumi CLI, pinned by scripts/tools/pulumi/go.mod (pkg/v3 and sdk/v3 at one
# version), plus the two Python helpers the CLI runs from next to itself, which ship as files
# in the sdk/v3 module: pulumi-language-python-exec and pulumi-resource-pulumi-python (the
# dynamic-provider shim, `python3 -m pulumi.dynamic`). The Python package `pulumi` in
# pyproject.toml is pinned to the same version. The CLI is built with its version stamped in:
# without it the Automation API refuses the CLI.
#
# Pulumi's Go language host (module github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3)
# is not on our Go module proxy at any version, so `pulumi up` on a `runtime: python` project
# runs our own minimal host instead: scripts/tools/pulumi-language-python (see langhost_build).
# The CLI trusts a language host only next to itself (a different one found on PATH draws a
# warning), so .tools/bin links into a bundle directory, $cache/pulumi-VERSION+lh-HASH, holding
# hard links (or copies) of the CLI, the two helpers and the host. Editing the host changes HASH:
# a new bundle is made in seconds, the CLI is not rebuilt.
pulumi_tool() {
  local moddir=$root/scripts/tools/pulumi version sdk_version
  version=$(mod_version "$moddir" github.com/pulumi/pulumi/pkg/v3)
  sdk_version=$(mod_version "$moddir" github.com/pulumi/pulumi/sdk/v3)
  [[ $version == "$sdk_version" ]] ||
    die "$moddir/go.mod pins pkg/v3 $version but sdk/v3 $sdk_version: they must be the same version"
  local py_pin
  py_pin=$(sed -n 's/^ *"pulumi==\([^"]*\)".*/\1/p' "$root/pyproject.toml")
  [[ v$py_pin == "$version" ]] ||
    die "pyproject.toml pins pulumi==$py_pin but $moddir/go.mod pins $version: keep them the same"
  local helpers=(pulumi-language-python-exec pulumi-resource-pulumi-python) found name
  # A pulumi on PATH is used only at exactly our version and with both helpers next to it
  # or on PATH; otherwise we build our own.
  found=$(on_path pulumi)
  if [[ -n $found ]] && [[ $("$found" version 2>/dev/null) == "$version" ]]; then
    local -A use=([pulumi]=$found)
    for name in "${helpers[@]}"; do
      if [[ -x ${found%/*}/$name ]]; then
        use[$name]=${found%/*}/$name
      else
        use[$name]=$(on_path "$name")
      fi
    done
    if [[ -n ${use[pulumi-language-python-exec]} && -n ${use[pulumi-resource-pulumi-python]} ]]; then
      for name in pulumi "${helpers[@]}"; do
        link "${use[$name]}" "$name"
      done
      # That CLI's own language host when it has one next to it, else ours.
      if [[ -x ${found%/*}/pulumi-language-python ]]; then
        link "${found%/*}/pulumi-language-python" pulumi-language-python
      else
        link "$(langhost_build "$version")/pulumi-language-python" pulumi-language-python
      fi
      return
    fi
  fi
  local dest=$cache/pulumi-$version
  if [[ ! -x $dest/pulumi ]]; then
    need_go "pulumi $version" "$moddir"
    say "building pulumi $version (several minutes, once; cached in $dest)"
    local start=$SECONDS sdkdir
    rm -rf "$dest.tmp"
    go_build "$moddir" "$dest.tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version"
    sdkdir=$(cd "$moddir" && GOWORK=off GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
    install -m 0755 "$sdkdir/python/cmd/pulumi-language-python-exec" "$dest.tmp/"
    install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" "$dest.tmp/"
    [[ $("$dest.tmp/pulumi" version 2>&1) == "$version" ]] ||
      die "the built pulumi reports version '$("$dest.tmp/pulumi" version 2>&1 | head -1)', not $version"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    say "built pulumi $version in $((SECONDS - start))s"
  fi
  local host hash bundle
  host=$(langhost_build "$version")
  hash=${host##*-}
  bundle=$cache/pulumi-$version+lh-$hash
  if [[ ! -x $bundle/pulumi-language-python ]]; then
    rm -rf "$bundle.tmp" && mkdir -p "$bundle.tmp"
    for name in pulumi "${helpers[@]}"; do
      ln "$dest/$name" "$bundle.tmp/$name" 2>/dev/null || cp -p "$dest/$name" "$bundle.tmp/$name"
    done
    ln "$host/pulumi-language-python" "$bundle.tmp/" 2>/dev/null ||
      cp -p "$host/pulumi-language-python" "$bundle.tmp/"
    rm -rf "$bundle" && mv "$bundle.tmp" "$bundle"
  fi
  for name in pulumi "${helpers[@]}" pulumi-language-python; do
    link "$bundle/$name" "$name"
  done
}

# langhost_build VERSION: build kloudctl's Python language host (scripts/tools/pulumi-language-python,
# requiring sdk/v3 at VERSION, the CLI's) once per content of its sources, into
# $cache/pulumi-language-python-VERSION-HASH; print that directory. Messages go to stderr.
langhost_build() {
  local moddir=$root/scripts/tools/pulumi-language-python version=$1 sdk_version hash
  sdk_version=$(mod_version "$moddir" github.com/pulumi/pulumi/sdk/v3)
  [[ $sdk_version == "$version" ]] ||
    die "$moddir/go.mod pins sdk/v3 $sdk_version but the Pulumi CLI is $version: they must be the same version"
  local sources=("$moddir"/go.mod "$moddir"/go.sum "$moddir"/*.go)
  hash=$(cat "${sources[@]}" | sha256sum | cut -c1-12)
  local dest=$cache/pulumi-language-python-$version-$hash
  if [[ ! -x $dest/pulumi-language-python ]]; then
    need_go "pulumi-language-python $version" "$moddir"
    say "building kloudctl's pulumi-language-python ($version, sources $hash; cached in $dest)" >&2
    local start=$SECONDS
    rm -rf "$dest.tmp"
    go_build "$moddir" "$dest.tmp/pulumi-language-python" . -ldflags "-X main.version=${version#v}" >&2
    [[ $("$dest.tmp/pulumi-language-python" -version 2>&1) == "${version#v}" ]] ||
      die "the built pulumi-language-python reports version '$("$dest.tmp/pulumi-language-python" -version 2>&1 | head -1)', not ${version#v}"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    say "built pulumi-language-python in $((SECONDS - start))s" >&2
  fi
  echo "$dest"
}

pulumi_tool
# pebble: Let's Encrypt's ACME test server, the directory the mail role's ACME end-to-end test
# gets its certificates from (tests/mail/pebble.py). Unstamped builds report "dev".
go_tool pebble github.com/letsencrypt/pebble/v2 github.com/letsencrypt/pebble/v2/cmd/pebble \
  '^Pebble version: ' -version
