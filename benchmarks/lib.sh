# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
# Shared by the benchmark runners: boot a TCG test guest, make it a lockbox host, copy the
# collection's plugins in, run a script in it detached (a dropped SSH session cannot end
# it) and poll its log. Source it after setting: top, guest, run_dir.
# Times from a TCG guest are inflated: compare the ratios measured in one run.

# Set by the runner that sources this file.
top=${top:?} run_dir=${run_dir:?} guest=${guest:?}

bench_boot() {  # bench_boot DATA_DISK_SIZE
  export PATH="$top/.venv/bin:$PATH" ANSIBLE_CONFIG="$top/ansible.cfg"
  mkdir -p "$run_dir"
  trap 'tools/testguest/testguest down "$guest" --run-dir "$run_dir" >/dev/null' EXIT
  local config
  config=$(LOCKBOX_GUEST_MEMORY=${LOCKBOX_GUEST_MEMORY:-4096} \
    tools/testguest/testguest up "$guest" --run-dir "$run_dir" --data-disk "$1" | tail -n 1)
  port=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["port"])' "$config")
  key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["identity_file"])' "$config")
  ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
            -i "$key" -p "$port")
  cat > "$run_dir/inventory.yml" <<INV
bench:
  hosts:
    $guest: {ansible_host: 127.0.0.1, ansible_port: $port, ansible_user: root,
             ansible_ssh_private_key_file: $key, datastore_device: /dev/vdb}
INV
  ansible-playbook -i "$run_dir/inventory.yml" playbooks/machine_setup.yml >/dev/null
  # shellcheck disable=SC2016  # $d expands in the guest's shell, on purpose
  tar -C .build/collections --dereference -czf - ansible_collections/lockbox/fleet/plugins \
    | bench_ssh 'mkdir -p /opt/lockbox && tar -C /opt/lockbox -xzf - && cd /opt/lockbox &&
        for d in ansible_collections ansible_collections/lockbox ansible_collections/lockbox/fleet \
                 ansible_collections/lockbox/fleet/plugins; do touch "$d/__init__.py"; done'
}

bench_ssh() {
  # shellcheck disable=SC2029  # the command is built here and run in the guest
  ssh "${ssh_opts[@]}" root@127.0.0.1 "$@"
}

bench_copy() {  # bench_copy NAME FILE...: benchmarks/NAME/FILE... and benchmarks/floor.py to /opt/lockbox/NAME
  local name=$1; shift
  tar -C benchmarks -cf - floor.py | bench_ssh "mkdir -p /opt/lockbox/$name && tar -C /opt/lockbox/$name -xf -"
  tar -C "benchmarks/$name" -cf - "$@" | bench_ssh "tar -C /opt/lockbox/$name -xf -"
}

bench_run() {  # bench_run NAME: runs /opt/lockbox/NAME/bench.py in the guest, saves its JSON under benchmarks/NAME/runs
  # BENCH_EXTRA_ENV: more "KEY=VALUE" words for bench.py's environment.
  local name=$1 out state shown=0 lines kind extra="" word
  kind="$(nproc) cores, $(awk '/^MemTotal:/ {printf "%d GiB", $2 / 1048576}' /proc/meminfo), $(uname -m)"
  for word in ${BENCH_EXTRA_ENV:-}; do extra+=" -E $word"; done
  mkdir -p "benchmarks/$name/runs"
  out="benchmarks/$name/runs/$(date -u +%Y%m%dT%H%M%SZ).json"
  bench_ssh "systemd-run --unit=lockbox-bench --working-directory=/opt/lockbox/$name \
    -E PYTHONPATH=/opt/lockbox -E BENCH_ROUNDS=${BENCH_ROUNDS:-5} -E BENCH_ACCEL=${LOCKBOX_ACCEL:-tcg} \
    -E 'BENCH_HOST_KIND=$kind' -E BENCH_COMMIT=$(git rev-parse --short HEAD)$extra \
    -p StandardOutput=file:/opt/lockbox/bench.json -p StandardError=file:/opt/lockbox/bench.log \
    python3 /opt/lockbox/$name/bench.py"
  while :; do
    sleep 20
    state=$(bench_ssh 'systemctl show -P ActiveState lockbox-bench; systemctl show -P Result lockbox-bench' \
      2>/dev/null | paste -sd' ') || continue
    lines=$(bench_ssh "tail -n +$((shown + 1)) /opt/lockbox/bench.log" 2>/dev/null) || continue
    if [ -n "$lines" ]; then
      printf '%s\n' "$lines" >&2
      shown=$((shown + $(printf '%s\n' "$lines" | wc -l)))
    fi
    case "$state" in
      active*|activating*) ;;
      *) break ;;
    esac
  done
  case "$state" in
    *success*)
      bench_ssh 'cat /opt/lockbox/bench.json' | tee "$out"
      echo "saved $out (${LOCKBOX_ACCEL:-tcg} guest: compare ours/floor, not absolute times)" ;;
    *) echo "benchmark failed in the guest ($state): nothing saved" >&2; return 1 ;;
  esac
}
