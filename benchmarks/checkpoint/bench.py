# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint benchmark, run inside a test guest with the collection on sys.path.

One labelled service (app/compose.yaml) that warms up before it answers: awk fills
WARM_BYTES of memory and computes, then httpd serves. Each round, on the same container:

- checkpoint (left running): ours ``criu_checkpoint.create`` (into the volume, manifest,
  digests) against ``docker checkpoint create --leave-running`` (the daemon's own directory);
- restore to the first answer: ours ``criu_checkpoint.restore`` (stop, link the images into
  the container's checkpoint directory, start from them) against ``docker stop`` +
  ``docker start --checkpoint``, each until HTTP 200;
- restore against a cold start: ours restore to the first answer against ``docker stop`` +
  ``docker start`` of the same container, which warms up again before it answers.

The checkpoint's size is compared with the resident memory of the service's processes.
"""

import os
import shutil
import subprocess
import time

from floor import Bare, count_commands, delete_leftovers, http_ok, log, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _checkpoint
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose

HERE = os.path.dirname(os.path.abspath(__file__))  # python puts it on sys.path: floor.py lies beside
KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
NAME = "bench-ckpt"
CONTAINER = "app-warm-1"
LAYOUT, RUNNER = _repository.Layout(), Runner()


def record():
    return _repo_info.info(RUNNER, LAYOUT, NAME)[0]


def repo():
    return _project.Repository.from_record(LAYOUT, _state.ready_record(LAYOUT.state_dir, NAME))


def ip():
    return _compose.service_ip(record()["network_id"], 0)


def docker(bare, *args):
    return bare.run(["docker", "-H", _repo_daemon.docker_host(record()["network_id"]), *args])


def timed(action, *args):
    started = time.monotonic()
    result = action(*args)
    return (time.monotonic() - started) * 1000, result


def resident_bytes():
    """VmRSS of every process of the service's container (its cgroup)."""
    pid = docker(Bare(), "inspect", "-f", "{{.State.Pid}}", CONTAINER)
    with open("/proc/%s/cgroup" % pid) as handle:
        cgroup = handle.read().strip().split("::", 1)[1]
    total = 0
    with open("/sys/fs/cgroup%s/cgroup.procs" % cgroup) as handle:
        for process in handle.read().split():
            with open("/proc/%s/status" % process) as status:
                total += next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    return total


# --- ours and the floor --------------------------------------------------------------------

def ours_checkpoint(name):
    _checkpoint.create(RUNNER, repo(), name)


def ours_restore(name):
    _checkpoint.restore(RUNNER, repo(), name)
    http_ok([ip()], timeout=600)


def floor_checkpoint(bare, name):
    docker(bare, "checkpoint", "create", "--leave-running", CONTAINER, name)


def floor_restore(bare, name):
    docker(bare, "stop", CONTAINER)
    docker(bare, "start", "--checkpoint", name, CONTAINER)
    http_ok([ip()], timeout=600)


def cold_start(bare):
    docker(bare, "stop", CONTAINER)
    docker(bare, "start", CONTAINER)
    http_ok([ip()], timeout=600)


# --- rounds --------------------------------------------------------------------------------

def setup():
    delete_leftovers(RUNNER, LAYOUT, lambda name: name.split(":")[0] == NAME)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="opened", size="4G", key=KEY)
    rec = record()
    shutil.copytree(os.path.join(HERE, "app"), os.path.join(rec["mount_path"], "app"), dirs_exist_ok=True)
    with open(os.path.join(rec["mount_path"], "app", "Rediaccfile"), "w") as handle:
        handle.write("up() {\n  docker image inspect lockbox-test/busybox:1 >/dev/null 2>&1 || "
                     "docker import /usr/share/lockbox-test/busybox.tar lockbox-test/busybox:1 >/dev/null\n"
                     "  renet compose -- up -d\n}\ndown() {\n  renet compose -- down\n}\n")
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="up", key=KEY)
    http_ok([ip()], timeout=600)


def one_round(round_, ops, bare):
    ours_name, floor_name = "b%d" % round_, "fl%d" % round_
    first = ("ours", "floor") if round_ % 2 == 0 else ("floor", "ours")
    resident = resident_bytes()  # of the process tree that is dumped now (it changes between rounds)
    for who in first:
        if who == "ours":
            ops["checkpoint"]["ours_all"].append(timed(ours_checkpoint, ours_name)[0])
        else:
            ops["checkpoint"]["floor_all"].append(timed(floor_checkpoint, bare, floor_name)[0])
    for who in first:
        if who == "ours":
            ops["restore_to_answer"]["ours_all"].append(timed(ours_restore, ours_name)[0])
        else:
            ops["restore_to_answer"]["floor_all"].append(timed(floor_restore, bare, floor_name)[0])
    ops["restore_vs_cold_start"]["ours_all"].append(ops["restore_to_answer"]["ours_all"][-1])
    ops["restore_vs_cold_start"]["floor_all"].append(timed(cold_start, bare)[0])
    size = next(e["size_bytes"] for e in _checkpoint.listing(repo().mount) if e["name"] == ours_name)
    _checkpoint.delete(repo(), ours_name)
    subprocess.run(["docker", "-H", _repo_daemon.docker_host(record()["network_id"]), "checkpoint", "rm",
                    CONTAINER, floor_name], capture_output=True, check=False)
    left = _checkpoint._size(_repo_daemon.temporary_dir(repo().mount))
    log("round %d: checkpoint ours %.0f floor %.0f ms; restore ours %.0f floor %.0f ms; cold start %.0f ms; "
        "checkpoint %d bytes; %d bytes left in the daemon's TMPDIR"
        % (round_, ops["checkpoint"]["ours_all"][-1], ops["checkpoint"]["floor_all"][-1],
           ops["restore_to_answer"]["ours_all"][-1], ops["restore_to_answer"]["floor_all"][-1],
           ops["restore_vs_cold_start"]["floor_all"][-1], size, left))
    return size, resident


def pages_read_ms():
    """Reading one dump's memory pages back from the encrypted volume, caches dropped: any restore's I/O floor."""
    ours_checkpoint("io")
    directory = _checkpoint.path_of(repo().mount, "io")
    pages = [os.path.join(where, name) for where, _dirs, files in os.walk(directory)
             for name in files if name.startswith("pages-")]
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as handle:
        handle.write("3\n")
    started = time.monotonic()
    for path in pages:
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    took = (time.monotonic() - started) * 1000
    _checkpoint.delete(repo(), "io")
    return round(took, 1)


def count_each(ops):
    ops["checkpoint"]["ours_commands"] = count_commands(lambda: ours_checkpoint("traced"))
    ops["restore_to_answer"]["ours_commands"] = count_commands(lambda: ours_restore("traced"))
    _checkpoint.delete(repo(), "traced")
    ops["checkpoint"]["floor_commands"] = count_commands(lambda: floor_checkpoint(Bare(), "fltraced"))
    ops["restore_to_answer"]["floor_commands"] = count_commands(lambda: floor_restore(Bare(), "fltraced"))


def main():
    setup()
    ops = {name: {"ours_all": [], "floor_all": []}
           for name in ("checkpoint", "restore_to_answer", "restore_vs_cold_start")}
    bare = Bare()
    cold_start(bare)  # warm once before measuring
    measured = [one_round(round_, ops, bare) for round_ in range(ROUNDS)]
    sizes = [size for size, _resident in measured]
    ratios = sorted(size / resident for size, resident in measured)
    read_ms = pages_read_ms()
    count_each(ops)
    ops["checkpoint"]["floor_steps"] = ops["restore_to_answer"]["floor_steps"] = bare.steps
    report(ops, {"rounds": ROUNDS, "resident_bytes": [resident for _size, resident in measured],
                 "checkpoint_bytes": sizes, "checkpoint_to_resident": round(ratios[len(ratios) // 2], 3),
                 "warm_bytes": 268435456, "pages_read_ms": read_ms,
                 "note": "restore_vs_cold_start: floor_ms is the cold start (warm-up again); pages_read_ms: "
                         "reading one dump's memory pages from the encrypted volume, caches dropped"})
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="down", unmount=True)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="absent", force=True)


if __name__ == "__main__":
    main()
