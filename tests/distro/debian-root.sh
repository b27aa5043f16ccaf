#!/usr/bin/env bash
# Tries weblab as a newcomer would on a fresh Debian release: a minimal root made with debootstrap,
# entered as a machine of its own, then the README's commands from a fresh clone of a branch.
#
#   tests/distro/debian-root.sh [--suite trixie] [--root DIR] [--repo GITDIR] [--branch B] STEP...
#   STEP: root     debootstrap --variant=minbase SUITE into DIR (skipped if DIR has a system)
#         install  add what a course VM has (git, python3, make), clone, `make install` twice
#         labs     every design: up --detach, a page through its entry point, down, nothing left;
#                  then `weblab run dns-cname http-exchange spof`
#         claims   `weblab run all`: every claim (~15 min), then `weblab report`
#         shell    an interactive shell inside, for looking around
#
# How it is entered (and why not chroot): a mount namespace of its own whose / is DIR itself
# (mount --bind DIR DIR + pivot_root), so `mnexec -a PID`, which enters a lab host's mount
# namespace, lands inside DIR and not on this machine's root; proc, sys and dev from this machine,
# a devpts instance of its own (Mininet's host shells need ptys), a tmpfs /run. The root shares this
# machine's kernel and network namespace: no other lab may run meanwhile. With LAB_LOCK=PATH the
# labs step holds that flock(1) lock while it runs.
# Package scripts inside cannot start services (policy-rc.d), as on the machines this project is
# built on: weblab starts every daemon itself, and a system nginx or named would bind this machine's
# own ports.
set -euo pipefail

SUITE=trixie
ROOT=""
HERE=$(dirname "$0")
REPO=$(cd "$HERE" && cd "$(git rev-parse --git-common-dir)" && pwd)  # the git directory (a worktree's too)
BRANCH=$(git -C "$HERE" rev-parse --abbrev-ref HEAD)
CLONE=/root/weblab
DESIGNS=(one-server distributed secured scaled)
CLAIMS=(dns-cname http-exchange spof)

die() { echo "debian-root: $*" >&2; exit 2; }

# The Debian mirror this machine's apt uses (first non-security source), else deb.debian.org.
mirror() {
  local uri
  uri=$(grep -hsE '^\s*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
          /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')
  echo "${uri:-http://deb.debian.org/debian}"
}

# Run CMD... inside ROOT as its own machine (see the header); the repo is visible read-only at /mnt/repo.
enter() {
  unshare --mount --propagation private -- "$0" __inside "$ROOT" "$REPO" "$@"
}

inside() {  # the part of enter() that runs in the new mount namespace
  local r=$1 repo=$2; shift 2
  mount --bind "$r" "$r"
  mount -t proc proc "$r/proc"
  mount --rbind /sys "$r/sys"
  mount --rbind /dev "$r/dev"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
  mount --bind "$r/dev/pts/ptmx" "$r/dev/ptmx"
  mount -t tmpfs -o mode=0755 tmpfs "$r/run"
  mkdir -p "$r/mnt/repo" "$r/.oldroot"
  mount --bind -o ro "$repo" "$r/mnt/repo"
  cd "$r"
  pivot_root . .oldroot
  cd /
  umount -l /.oldroot
  rmdir /.oldroot
  # A newcomer's environment, not this machine's (no pip configuration, no tool shims on PATH).
  exec env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

step_root() {
  if [ -x "$ROOT/usr/bin/apt-get" ]; then
    echo "== root: $ROOT already holds $(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME")"
  else
    command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install debootstrap"
    echo "== root: debootstrap --variant=minbase $SUITE $ROOT $(mirror)"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$(mirror)"
  fi
  local m; m=$(mirror)
  # What a fresh install's sources hold: the release, its updates, its security archive.
  cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $m $SUITE main
deb $m $SUITE-updates main
deb ${m%/debian*}/debian-security $SUITE-security main
EOF
  # The root uses this machine's network: the certificate authorities this machine adds locally
  # (an HTTPS proxy's, say) must be trusted inside too, or pip cannot reach the package index.
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp -p /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
}

step_install() {
  enter bash -euo pipefail -c '
    export DEBIAN_FRONTEND=noninteractive
    echo "== install: what a course VM has: git python3 make"
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends git python3 make ca-certificates >/dev/null
    update-ca-certificates >/dev/null
    rm -rf '"$CLONE"'
    git clone -q --branch '"$BRANCH"' /mnt/repo '"$CLONE"'
    cd '"$CLONE"'
    echo "== install: $(. /etc/os-release; echo $PRETTY_NAME), branch '"$BRANCH"' at $(git log --oneline -1)"
    echo "== install: make install (first run; full output in /root/install-1.log)"
    s=$(date +%s)
    make install > /root/install-1.log 2>&1 || { tail -n 30 /root/install-1.log; exit 1; }
    echo "   took $(( $(date +%s) - s )) s"
    grep -v "^Get:\|^Selecting\|^Preparing\|^Unpacking\|^Setting up\|^Processing\|^(Reading" /root/install-1.log | tail -n 15
    echo "== install: deprecation warnings in the output: $(grep -ci deprecat /root/install-1.log || true)"
    echo "== install: make install (second run)"
    s=$(date +%s%N)
    make install 2>&1 | tee /root/install-2.log
    echo "   took $(( ($(date +%s%N) - s) / 1000000 )) ms"
    weblab doctor || true
  '
}

step_labs() {
  local lock=()
  [ -n "${LAB_LOCK:-}" ] && lock=(flock -w 5400 "$LAB_LOCK")
  "${lock[@]}" "$0" --root "$ROOT" --suite "$SUITE" __labs
}

labs_inside() {
  enter bash -uo pipefail -c '
    cd '"$CLONE"'
    designs="'"${DESIGNS[*]}"'"; claims="'"${CLAIMS[*]}"'"
    leftovers() {  # what a run may leave: its directory, its interfaces
      { ls -A /run/weblab 2>/dev/null; ip -br link | grep -- -eth | cut -d" " -f1; } | tr "\n" " "
    }
    summary=()
    for d in $designs; do
      case $d in secured|scaled) url=https://www.foobar.com/ ;; *) url=http://www.foobar.com/ ;; esac
      echo "== labs: $d: up --detach"
      s=$(date +%s%N)
      if ! weblab up "$d" --detach; then
        summary+=("$d: up FAILED"); weblab clean >/dev/null 2>&1; continue
      fi
      up_ms=$(( ($(date +%s%N) - s) / 1000000 ))
      page=$(weblab exec client -- curl -s --max-time 5 -o /dev/null -w "%{http_code} %{content_type}" "$url" || true)
      title=$(weblab exec client -- curl -s --max-time 5 "$url" | grep -o "<title>[^<]*" | head -n1 || true)
      echo "   $url -> $page ${title#<title>}"
      weblab down
      left=$(leftovers)
      summary+=("$d: up ${up_ms} ms, $url -> ${page:-no answer}, after down left: ${left:-nothing}")
    done
    echo "== labs: weblab run $claims"
    weblab run $claims; rc=$?
    left=$(leftovers)
    summary+=("run $claims: exit $rc, left: ${left:-nothing}")
    echo "== summary ($(. /etc/os-release; echo $PRETTY_NAME))"
    printf "   %s\n" "${summary[@]}"
    true
  '
}

step_claims() {
  local lock=()
  [ -n "${LAB_LOCK:-}" ] && lock=(flock -w 5400 "$LAB_LOCK")
  "${lock[@]}" unshare --mount --propagation private -- "$0" __inside "$ROOT" "$REPO" bash -c '
    cd '"$CLONE"' && weblab run all --junit results/junit.xml; rc=$?
    weblab report >/dev/null
    echo "== claims on $(. /etc/os-release; echo $PRETTY_NAME): weblab run all exit $rc, left: $(ls -A /run/weblab 2>/dev/null; ip -br link | grep -c -- -eth) (run dirs; -eth links)"
    exit $rc'
}

steps=()
while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --root) ROOT=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --branch) BRANCH=$2; shift 2 ;;
    __inside) shift; inside "$@" ;;
    __labs) shift; [ -n "$ROOT" ] || die "--root DIR missing"; labs_inside; exit ;;
    root|install|labs|claims|shell) steps+=("$1"); shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount namespaces)"
[ ${#steps[@]} -gt 0 ] || die "no step given: root install labs claims shell"
ROOT=${ROOT:-/var/tmp/weblab-debian-$SUITE}
for s in "${steps[@]}"; do
  case $s in
    root) step_root ;;
    install) step_install ;;
    labs) step_labs ;;
    claims) step_claims ;;
    shell) enter bash -l ;;
  esac
done
