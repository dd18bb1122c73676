#!/usr/bin/env bash
# `make fresh-check`: the README's two commands as a newcomer runs them. Clones the committed
# HEAD into a new folder, gives it none of the project's caches (tools, Go modules and builds,
# pip and uv downloads, the test-cabinet image, podman networks and containers of the
# project), then runs `make demo` and the CI entry point (`.ci/run`, i.e. `make test` where
# every test must run) there, timing each stage. Fails when a stage fails or when "internal
# error" appears in what they printed.
#
#   scripts/fresh-check.sh [--keep] [--dir DIR]
#
# What it cannot undo: Debian packages already installed stay installed (set-up then only
# checks them). It removes the project's podman images, networks and containers on this
# machine (labelled org.kloudctl.testbed, images localhost/kloudctl-debian): stop your own
# test cabinets first.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd -P)
keep=0
dir=
while (($#)); do
  case $1 in
    --keep) keep=1 ;;
    --dir)
      dir=$2
      shift
      ;;
    *)
      echo "usage: $0 [--keep] [--dir DIR]" >&2
      exit 2
      ;;
  esac
  shift
done
dir=${dir:-$(mktemp -d /var/tmp/kloudctl-fresh.XXXXXX)}
mkdir -p "$dir"
logs=$dir/logs
mkdir -p "$logs"
clone=$dir/kloudctl
caches=$dir/caches

if [[ -n $(git -C "$src" status --porcelain --untracked-files=no) ]]; then
  echo "fresh-check: note: uncommitted changes in $src are not part of the check (it clones HEAD)"
fi

declare -a names=() times=()
stage() {
  local name=$1 start=$SECONDS rc=0
  shift
  printf '\n\033[1m== fresh-check: %s\033[0m\n' "$name"
  "$@" > >(tee "$logs/$name.log") 2>&1 || rc=$?
  names+=("$name")
  times+=($((SECONDS - start)))
  if ((rc != 0)); then
    summary
    echo "fresh-check: FAILED at '$name' (exit $rc); its output is in $logs/$name.log" >&2
    exit 1
  fi
}
summary() {
  printf '\nfresh-check: stage times (%s)\n' "$(git -C "$src" rev-parse --short HEAD)"
  local i total=0
  for i in "${!names[@]}"; do
    printf '  %-10s %5ds  (%dm%02ds)\n' "${names[$i]}" "${times[$i]}" $((times[i] / 60)) $((times[i] % 60))
    total=$((total + times[i]))
  done
  printf '  %-10s %5ds  (%dm%02ds)\n' total "$total" $((total / 60)) $((total % 60))
}

clone_repo() {
  rm -rf "$clone"
  git clone -q --no-local "$src" "$clone"
  git -C "$clone" log -1 --format='cloned %h %s'
}

forget_caches() {
  # The newcomer's caches are empty folders of this check; nothing of the developer's is used.
  rm -rf "$caches" && mkdir -p "$caches"/{kloudctl,tools,gomod,gocache,pip,uv}
  local ids
  ids=$(podman ps -a -q --filter label=org.kloudctl.testbed=1 2>/dev/null || true)
  [[ -z $ids ]] || podman rm -f -t 2 $ids >/dev/null
  local backend
  for backend in netavark cni; do
    ids=$(podman --network-backend=$backend network ls -q --filter label=org.kloudctl.testbed=1 2>/dev/null || true)
    [[ -z $ids ]] || podman --network-backend=$backend network rm -f $ids >/dev/null
  done
  ids=$(podman images -q --filter reference='localhost/kloudctl-*' 2>/dev/null | sort -u || true)
  [[ -z $ids ]] || podman rmi -f $ids >/dev/null
  echo "removed the project's podman containers, networks and images; caches start empty in $caches"
}

# A newcomer's environment: no kloudctl variables, nothing of this checkout on PATH.
clean_path=
IFS=: read -ra parts <<<"$PATH"
for p in "${parts[@]}"; do
  [[ -n $p && $p != "$src"* ]] && clean_path+=${clean_path:+:}$p
done
in_clone() {
  (
    cd "$clone"
    for v in $(compgen -e | grep -E '^(KLOUDCTL_|PULUMI_|ANSIBLE_|VIRTUAL_ENV$)'); do unset "$v"; done
    export PATH=$clean_path
    export KLOUDCTL_CACHE=$caches/kloudctl KLOUDCTL_TOOLS_CACHE=$caches/tools
    export GOMODCACHE=$caches/gomod GOCACHE=$caches/gocache
    export PIP_CACHE_DIR=$caches/pip UV_CACHE_DIR=$caches/uv
    "$@"
  )
}

stage clone clone_repo
stage caches forget_caches
stage setup in_clone make setup
stage image in_clone .venv/bin/python -c \
  'from kloudctl.testbed.image import ensure_image; print("image:", ensure_image())'
stage demo in_clone make demo
stage test in_clone .ci/run

found=$(grep -l "internal error" "$logs"/demo.log "$logs"/test.log || true)
summary
if [[ -n $found ]]; then
  echo "fresh-check: FAILED: 'internal error' printed in: $found" >&2
  exit 1
fi
if ((keep)); then
  echo "fresh-check: passed; clone kept in $clone, logs in $logs"
else
  # The clone's own test cabinets are gone with its tests; keep only the logs.
  rm -rf "$clone" "$caches"
  echo "fresh-check: passed; logs in $logs"
fi
