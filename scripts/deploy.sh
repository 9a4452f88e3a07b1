#!/usr/bin/env bash
# Quick start 1: on a fresh Debian 12 machine, as root, deploy the lab with the XDP load balancer
# on localhost, installing everything it needs. Extra arguments go to ansible-playbook
# (e.g. -e lb_mode=nginx). Run it again: it reports changed=0.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$repo/scripts/bootstrap.sh")
"$repo/scripts/install-collection.sh"
cd "$repo"
exec "$venv/bin/ansible-playbook" -i inventory/localhost.yml playbooks/lab_deploy_lb.yml "$@"
