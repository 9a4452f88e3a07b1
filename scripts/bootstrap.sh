#!/usr/bin/env bash
# Prepares the controller: a Python venv with pinned Ansible tooling.
# Target-side packages (bcc, headers, docker, ...) are installed by the roles, not here.
# Safe to run repeatedly: the venv is reused while its requirements file is unchanged.
# Optional argument: another requirements file (e.g. requirements-core-2.17.txt) for a second venv,
# made next to the main one as <venv>-<file name without requirements- and .txt>.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EBPF_NET_VENV:-/opt/ebpf-networking/venv}
requirements=${1:-requirements-dev.txt}
if [ "$requirements" != requirements-dev.txt ]; then
  suffix=${requirements#requirements-}; venv="$venv-${suffix%.txt}"
fi
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$repo/$requirements" | cut -d' ' -f1)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "run as root: the roles install packages and load BPF programs"; exit 1
fi
if ! grep -q 'ID=debian' /etc/os-release 2>/dev/null; then
  log "warning: written for Debian 12; other distributions are untested"
fi

need_pkgs=()
for p in python3-venv python3-pip git rsync shellcheck curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/ansible-playbook" ]; then
  log "venv $venv is up to date"
else
  log "creating venv $venv (pinned tools from $requirements)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/$requirements"
  echo "$want" > "$stamp"
fi
echo "$venv"
