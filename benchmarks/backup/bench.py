# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup benchmark, run inside a test guest with the collection on sys.path.

One repository with a web service (app/compose.yaml), up. Each round, alternating who goes first:

- cold backup to the first answer: ours ``repo_backup.backup(mode="cold")`` (the datastore's lock,
  down() of every Rediaccfile, the frozen read-only snapshot, up()) then HTTP 200, against the
  library's down() + up() of the same Rediaccfiles then HTTP 200 (no snapshot: the floor of any
  cold backup). Our own ``outage_ms`` is reported too.
- hot backup: ours ``repo_backup.backup(mode="hot")`` against ``fsfreeze -f``, ``btrfs subvolume
  snapshot -r``, ``fsfreeze -u`` of the same subvolume.
"""

import os
import shutil
import subprocess
import time

from floor import Bare, count_commands, delete_leftovers, http_ok, log, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_backup as _repo_backup
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose

HERE = os.path.dirname(os.path.abspath(__file__))  # python puts it on sys.path: floor.py lies beside
KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
NAME = "bench-backup"
LAYOUT, RUNNER = _repository.Layout(), Runner()


def record():
    return _repo_info.info(RUNNER, LAYOUT, NAME)[0]


def repo():
    return _project.Repository.from_record(LAYOUT, _state.ready_record(LAYOUT.state_dir, NAME))


def ip():
    return _compose.service_ip(record()["network_id"], 0)


def timed(action):
    started = time.monotonic()
    result = action()
    return (time.monotonic() - started) * 1000, result


def ours_cold():
    result = _repo_backup.backup(RUNNER, LAYOUT, NAME, mode="cold", retention={"last": 1})
    http_ok([ip()], timeout=600)
    return result["outage_ms"]


def floor_cold():
    here = repo()
    _repo_app.down(RUNNER, here, dict(os.environ))
    _repo_app.up(RUNNER, here, dict(os.environ))
    http_ok([ip()], timeout=600)


def write_a_little():
    """A hot backup of unchanged data is skipped: each round writes a file first."""
    with open(os.path.join(record()["mount_path"], "app", "tick"), "w") as handle:
        handle.write(str(time.time()))
    os.sync()


def ours_hot():
    _repo_backup.backup(RUNNER, LAYOUT, NAME, mode="hot", retention={"last": 1})


def floor_hot(bare, index):
    rec = record()
    target = "%s/floor-%d" % (LAYOUT.backups(rec["guid"]).replace("/backups/", "/bench-floor/"), index)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    bare.run(["fsfreeze", "-f", rec["mount_path"]])
    try:
        bare.run(["btrfs", "subvolume", "snapshot", "-r", LAYOUT.subvolume(rec["guid"]), target])
    finally:
        bare.run(["fsfreeze", "-u", rec["mount_path"]])
    return target


def setup():
    delete_leftovers(RUNNER, LAYOUT, lambda name: name == NAME)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="opened", size="1G", key=KEY)
    rec = record()
    shutil.copytree(os.path.join(HERE, "app"), os.path.join(rec["mount_path"], "app"), dirs_exist_ok=True)
    with open(os.path.join(rec["mount_path"], "app", "Rediaccfile"), "w") as handle:
        handle.write("up() {\n  docker image inspect lockbox-test/busybox:1 >/dev/null 2>&1 || "
                     "docker import /usr/share/lockbox-test/busybox.tar lockbox-test/busybox:1 >/dev/null\n"
                     "  renet compose -- up -d\n}\ndown() {\n  renet compose -- down\n}\n")
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="up", key=KEY)
    http_ok([ip()], timeout=600)


def main():
    setup()
    ops = {name: {"ours_all": [], "floor_all": []} for name in ("cold_backup_to_answer", "hot_backup")}
    outages, bare, floors = [], Bare(), []
    floor_cold()  # warm once before measuring
    for round_ in range(ROUNDS):
        order = ("ours", "floor") if round_ % 2 == 0 else ("floor", "ours")
        for who in order:
            if who == "ours":
                took, outage = timed(ours_cold)
                ops["cold_backup_to_answer"]["ours_all"].append(took)
                outages.append(outage)
            else:
                ops["cold_backup_to_answer"]["floor_all"].append(timed(floor_cold)[0])
        for who in order:
            write_a_little()
            if who == "ours":
                ops["hot_backup"]["ours_all"].append(timed(ours_hot)[0])
            else:
                took, target = timed(lambda index=round_: floor_hot(bare, index))
                ops["hot_backup"]["floor_all"].append(took)
                floors.append(target)
        log("round %d: cold ours %.0f ms (outage %.0f ms) floor %.0f ms; hot ours %.0f floor %.0f ms"
            % (round_, ops["cold_backup_to_answer"]["ours_all"][-1], outages[-1],
               ops["cold_backup_to_answer"]["floor_all"][-1], ops["hot_backup"]["ours_all"][-1],
               ops["hot_backup"]["floor_all"][-1]))
    write_a_little()
    ops["hot_backup"]["ours_commands"] = count_commands(ours_hot)
    write_a_little()
    ops["hot_backup"]["floor_commands"] = count_commands(lambda: floors.append(floor_hot(Bare(), 99)))
    ops["cold_backup_to_answer"]["ours_commands"] = count_commands(ours_cold)
    ops["cold_backup_to_answer"]["floor_commands"] = count_commands(floor_cold)
    ops["hot_backup"]["floor_steps"] = bare.steps
    outages.sort()
    report(ops, {"rounds": ROUNDS, "cold_outage_ms_all": outages, "cold_outage_ms": outages[len(outages) // 2],
                 "note": "cold_backup_to_answer: from the call to the service's first HTTP 200 again; the floor "
                         "is down() + up() of the same Rediaccfiles; cold_outage_ms: ours, from the start of "
                         "down() to the end of up()"})
    for target in floors:
        subprocess.run(["btrfs", "subvolume", "delete", target], capture_output=True, check=False)
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="down", unmount=True)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="absent", force=True)


if __name__ == "__main__":
    main()
