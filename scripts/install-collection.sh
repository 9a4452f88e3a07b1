#!/usr/bin/env bash
# Builds the collection from this checkout and installs it for the current user, as
# `ansible-galaxy collection install` would from Galaxy. Dependencies (none for production;
# community.docker for the lab) come with the pinned `ansible` package in the venv, so Galaxy is not asked.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EBPF_NET_VENV:-/opt/ebpf-networking/venv}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$repo"
"$venv/bin/ansible-galaxy" collection build --force --output-path "$out" >/dev/null
"$venv/bin/ansible-galaxy" collection install --force --no-deps "$out"/ebpf-networking-*.tar.gz >/dev/null
echo "[install-collection] installed $(basename "$out"/ebpf-networking-*.tar.gz) into ~/.ansible/collections" >&2
