#!/usr/bin/env bash
# Quick start 2: the whole test suite, as root on a Debian 12 machine (installs what it needs).
#   lint      ansible-lint, production profile (zero violations)
#   sanity    ansible-test sanity on a copy under ansible_collections/ebpf/networking
#   units     ansible-test units (pytest)
#   sanity-2.17, units-2.17  the same on the oldest supported ansible-core (its own venv)
#   host      the bpf_toolchain role on localhost (bcc, headers, bpffs) for the tests below
#   integration  pytest tests/integration: modules against real namespaces, packets checked by scapy
#   molecule  every lab scenario in extensions/molecule (default, xdp, ...)
#   ssh_fleet the molecule scenario of three hosts over SSH with become (production playbooks)
#   benchmark the quick benchmark profile on the lab (ratios are reported; missing numbers fail), then teardown
# Pick steps with TEST_STEPS="units integration"; MOLECULE_SCENARIOS="default" limits molecule.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
steps=${TEST_STEPS:-lint sanity units sanity-2.17 units-2.17 host integration molecule ssh_fleet benchmark}
venv=$("$repo/scripts/bootstrap.sh") || exit 1
export PATH="$venv/bin:$PATH" NO_COLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
work=${EBPF_NET_TEST_WORK:-/tmp/ebpf-networking-test}
coll="$work/ansible_collections/ebpf/networking"
passed=0; failed=0; failed_names=()

logs="$work/logs"; mkdir -p "$logs"
step() {  # step NAME COMMAND...: output also kept in $logs/NAME.log for the summary of failures
  local name=$1; shift
  local start=$SECONDS
  printf '\n==> %s\n' "$name"
  if "$@" 2>&1 | tee "$logs/$name.log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    passed=$((passed + 1)); printf '==> %s passed (%ss)\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1)); failed_names+=("$name"); printf '==> %s FAILED (%ss)\n' "$name" $((SECONDS - start))
  fi
}

copy_collection() {
  rm -rf "$coll"; mkdir -p "$coll"
  (cd "$repo" && { git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './.git/*'; } \
    | rsync -a --files-from=- ./ "$coll/")
}

offline_get_pip() {  # offline_get_pip PIP_VERSION (the one this ansible-test bootstraps: 24.2 for 2.18)
  # ansible-test bootstraps pip in its venvs with a get-pip script it downloads from a host that is
  # not reachable here; give it a stand-in that runs pip from a wheel fetched from PyPI.
  local version=$1 wheels=/opt/ebpf-networking/wheels
  local script="$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
  [ -f "$script" ] && return 0
  mkdir -p "$wheels" "$(dirname "$script")"
  ls "$wheels"/pip-"$version"-*.whl >/dev/null 2>&1 || pip download -q --no-deps -d "$wheels" "pip==$version"
  sed "s|@WHEEL_DIR@|$wheels|; s|@VERSION@|$version|" "$repo/scripts/get_pip_offline.py" > "$script"
}

run_sanity() {  # run_sanity [VENV PIP_VERSION]: ansible-test of that venv (default: the main one)
  local bin=${1:+$1/bin/}
  offline_get_pip "${2:-24.2}" && copy_collection && (cd "$coll" && "${bin}ansible-test" sanity --venv --python 3.11 --color no)
}

run_units() {
  local bin=${1:+$1/bin/}
  copy_collection && (cd "$coll" && "${bin}ansible-test" units --local --python 3.11 --color no)
}

run_core217() {  # run_core217 run_sanity|run_units: in the venv of the oldest supported ansible-core
  local v; v=$("$repo/scripts/bootstrap.sh" requirements-core-2.17.txt) || return 1
  "$1" "$v" 23.1.2  # the pip ansible-test 2.17 bootstraps
}

run_lint() {  # ansible-lint, production profile (.ansible-lint): zero violations; it resolves our
  # modules from the installed collection (offline), so install this checkout first
  "$repo/scripts/install-collection.sh" && (cd "$repo" && ansible-lint --nocolor)
}

run_host() {
  "$repo/scripts/install-collection.sh" && (cd "$repo" && ansible-playbook -i inventory/localhost.yml playbooks/lab_prepare_host.yml)
}

run_integration() {
  copy_collection && (cd "$coll" && PYTHONPATH="$work" python -m pytest -p no:cacheprovider -v tests/integration)
}

run_molecule() {
  local rc=0 s
  "$repo/scripts/install-collection.sh" || return 1
  for s in ${MOLECULE_SCENARIOS:-$(ls "$repo/extensions/molecule")}; do
    [ -f "$repo/extensions/molecule/$s/molecule.yml" ] || continue
    [ -z "${MOLECULE_SCENARIOS:-}" ] && [ "$s" = ssh_fleet ] && continue  # its own step
    (cd "$repo" && molecule test -s "$s") || rc=1
  done
  return $rc
}

run_ssh_fleet() {
  "$repo/scripts/install-collection.sh" && (cd "$repo" && molecule test -s ssh_fleet)
}

run_benchmark() {
  "$repo/scripts/install-collection.sh" || return 1
  local rc=0
  (cd "$repo" && ansible-playbook -i inventory/localhost.yml playbooks/lab_benchmark.yml -e benchmark_profile=quick) || rc=1
  (cd "$repo" && ansible-playbook -i inventory/localhost.yml playbooks/lab_teardown.yml) || rc=1
  return $rc
}

for s in $steps; do
  case $s in
    lint) step lint run_lint ;;
    sanity) step sanity run_sanity ;;
    units) step units run_units ;;
    sanity-2.17) step sanity-2.17 run_core217 run_sanity ;;
    units-2.17) step units-2.17 run_core217 run_units ;;
    host) step host run_host ;;
    integration) step integration run_integration ;;
    molecule) step molecule run_molecule ;;
    ssh_fleet) step ssh_fleet run_ssh_fleet ;;
    benchmark) step benchmark run_benchmark ;;
    *) echo "unknown step $s"; failed=$((failed + 1)) ;;
  esac
done

failure_summary() {  # CI shows only the end of the output: repeat what failed, briefly, here
  local name
  for name in "${failed_names[@]}"; do
    printf '\n==> why %s failed (full log: %s)\n' "$name" "$logs/$name.log"
    grep -E '^(FAILED|ERROR) |^E   |fatal: \[|FAILED! =>|failed=[1-9]|"msg": |^ *msg: |Traceback|CRITICAL|^ERROR' "$logs/$name.log" \
      | cut -c1-400 | head -n 25
    echo '--- last lines:'; tail -n 8 "$logs/$name.log" | cut -c1-400
  done
}

echo
[ $failed -gt 0 ] && failure_summary
[ $failed -gt 0 ] && echo "failed steps: ${failed_names[*]}"
echo "steps: $passed passed, $failed failed"
[ $failed -eq 0 ]
