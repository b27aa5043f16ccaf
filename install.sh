#!/usr/bin/env bash
# Installs everything weblab needs on Debian 12 / 13 (tried) and Ubuntu 24.04 (expected): Debian
# packages, a venv from the system Python (so Debian's Mininet imports) with pinned packages, weblab
# itself as a PEP 660 editable install, and the `weblab` command.
# Idempotent: a second run checks, finds everything in place and changes nothing.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(pwd)
VENV="$REPO/.venv"
SYSPY=/usr/bin/python3

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: needs root (apt-get, /usr/local/bin): run: sudo make install" >&2
  exit 2
fi

mapfile -t PKGS < <(grep -v '^\s*#' debian-packages.txt | sed '/^\s*$/d')
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark (the packet analysis benchmark's reference) asks whether non-root users may capture: no
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  # Postfix asks which kind of mail site this is: none. weblab renders a configuration per run.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -q
  # --no-install-recommends keeps desktop tools out; package scripts may not start services here,
  # and weblab starts every daemon itself, in its own hosts.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

stamp="$VENV/.weblab-installed"
want=$(cat requirements.txt constraints.txt pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install.sh: building the venv in $VENV"
  [ -x "$VENV/bin/python" ] || "$SYSPY" -m venv --system-site-packages "$VENV"
  pip=("$VENV/bin/pip" install -q --disable-pip-version-check)
  # The build backend first, pinned: pyproject.toml's editable install (PEP 660) needs
  # setuptools >= 64, and venvs of Python 3.12+ (Debian 13) ship no setuptools at all.
  "${pip[@]}" -c constraints.txt setuptools
  "${pip[@]}" -r requirements.txt -c constraints.txt
  # No build isolation: the pinned setuptools above builds it, nothing is fetched at build time.
  # The metadata now lives in the venv; a weblab.egg-info here is the former `setup.py develop`'s.
  rm -rf weblab.egg-info
  "${pip[@]}" --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c "import mininet.net, os_ken, scapy, matplotlib, pymysql, jinja2, gunicorn, starlette, uvicorn, selenium, yaml" \
  || { echo "install.sh: the venv cannot import its packages; remove $VENV and run again" >&2; exit 1; }

# Postfix's package enables a machine-wide MTA (postfix.service, whose instance postfix@- runs the master;
# with "No configuration" there is no /etc/postfix/main.cf and it does not start): weblab runs its own
# Postfix in the lab's mail host only, so the system one stays disabled and stopped (no-ops without systemd).
if [ -e /lib/systemd/system/postfix.service ] || [ -e /usr/lib/systemd/system/postfix.service ]; then
  systemctl disable postfix.service >/dev/null 2>&1 || true
  for unit in postfix@-.service postfix.service; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then systemctl stop "$unit" || true; fi
  done
fi

# `sudo weblab ...` must find the command (sudo's PATH has /usr/local/bin).
if [ "$(readlink /usr/local/bin/weblab 2>/dev/null)" != "$VENV/bin/weblab" ]; then
  ln -sfn "$VENV/bin/weblab" /usr/local/bin/weblab
fi
echo "install.sh: ready ($(weblab --help >/dev/null && echo 'weblab command OK'))"
