# SPDX-License-Identifier: GPL-3.0-or-later
"""Transfer benchmark, run inside test guest A with the collection on sys.path; guest B is the target.

A 3 GiB repository with 2 GiB of random data written in it, copied from A to B by the
collection's own library (``repo_transfer.push``: offer, read-only snapshot, ``btrfs send`` through
the meter into ``renet transfer receive`` over SSH, commit) against the floor, the same copy by bare
commands in the same run: ``btrfs subvolume snapshot -r`` then ``btrfs send | ssh B btrfs receive``.

- full_push: the whole repository (the target holds nothing of it);
- delta_push: after 50 MiB more written into the repository (untimed, the same change for both),
  the difference from the previous copy (``btrfs send -p``).

Bytes sent are recorded for each (ours counts the stream; the floor's is counted by ``wc -c`` on a
tee, untimed, once).
"""

import os
import subprocess
import time

from floor import Bare, count_commands, log, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_transfer as _transfer
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import ssh as _ssh

KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
FULL_ROUNDS = int(os.environ.get("BENCH_FULL_ROUNDS", "2"))
NAME = "bench-transfer"
WRITTEN_MIB, DELTA_MIB = int(os.environ.get("BENCH_WRITTEN_MIB", "2048")), 50
ADDRESS, PORT = os.environ["BENCH_TARGET_ADDRESS"], int(os.environ["BENCH_TARGET_PORT"])
TARGET = _ssh.Target(ADDRESS, port=PORT)
# The floor's own SSH: root's plain key on B (the bench run authorized it), the same cipher defaults.
ROOT_SSH = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-i", "/root/.ssh/bench", "-p", str(PORT), "root@" + ADDRESS]
LAYOUT, RUNNER = _repository.Layout(), Runner()
FLOOR_DIR = "/mnt/rediacc/floor"


def on_target(command):
    subprocess.run([*ROOT_SSH, command], check=True)


def sh(command):
    subprocess.run(["sh", "-c", command], check=True)


def write(mib, name):
    info = _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="opened", key=KEY)["repository"]
    sh("dd if=/dev/urandom of=%s/%s bs=1M count=%d conv=fsync status=none" % (info["mount_path"], name, mib))
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="closed")


def forget_on_target(guid):
    on_target("btrfs -q subvolume delete /mnt/rediacc/repositories/%s /mnt/rediacc/snapshots/%s/* 2>/dev/null; "
              "rm -rf /mnt/rediacc/snapshots/%s /var/lib/rediacc/state/repos/%s.json; true" % (guid, guid, guid, NAME))


def forget_here(guid):
    sh("btrfs -q subvolume delete /mnt/rediacc/snapshots/%s/* 2>/dev/null; rm -rf /mnt/rediacc/snapshots/%s; true"
       % (guid, guid))


def ours():
    started = time.monotonic()
    result = _transfer.push(RUNNER, LAYOUT, NAME, TARGET)
    return (time.monotonic() - started) * 1000, result["transfer"]


def floor(guid, snapshot, parent=None, runner=None):
    """Snapshot read-only, then btrfs send [-p parent] | ssh B btrfs receive: what a person would type."""
    runner = runner or Bare()
    started = time.monotonic()
    runner.run(["btrfs", "-q", "subvolume", "snapshot", "-r", LAYOUT.subvolume(guid), "%s/%s" % (FLOOR_DIR, snapshot)])
    send = "btrfs send -q %s%s/%s" % ("-p %s/%s " % (FLOOR_DIR, parent) if parent else "", FLOOR_DIR, snapshot)
    runner.run(["sh", "-c", "%s | %s btrfs receive %s" % (send, " ".join(ROOT_SSH), FLOOR_DIR)])
    return (time.monotonic() - started) * 1000


def floor_bytes(snapshot, parent):
    out = subprocess.run(["sh", "-c", "btrfs send -q %s%s/%s | wc -c" % (
        "-p %s/%s " % (FLOOR_DIR, parent) if parent else "", FLOOR_DIR, snapshot)], check=True,
        capture_output=True, text=True).stdout
    return int(out)


def drop_floor(snapshot, target_too=True):
    sh("btrfs -q subvolume delete %s/%s" % (FLOOR_DIR, snapshot))
    if target_too:
        on_target("btrfs -q subvolume delete %s/%s" % (FLOOR_DIR, snapshot))


def main():
    ops = {name: {"ours_all": [], "floor_all": [], "ours_bytes": [], "floor_bytes": []}
           for name in ("full_push", "delta_push")}
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="opened", size="3G", key=KEY)
    write(WRITTEN_MIB, "data.bin")
    guid = _repo_info.info(RUNNER, LAYOUT, NAME)[0]["guid"]
    os.makedirs(FLOOR_DIR, exist_ok=True)
    on_target("mkdir -p %s" % FLOOR_DIR)
    log("repository %s: %d MiB written; full copies" % (NAME, WRITTEN_MIB))
    for index in range(FULL_ROUNDS):
        forget_on_target(guid)
        forget_here(guid)
        ms, sent = ours()
        ops["full_push"]["ours_all"].append(ms)
        ops["full_push"]["ours_bytes"].append(sent["bytes"])
        log("full ours %.0f ms, %d bytes" % (ms, sent["bytes"]))
        name = "full-%d" % index
        ops["full_push"]["floor_all"].append(floor(guid, name))
        if index == 0:
            ops["full_push"]["floor_bytes"].append(floor_bytes(name, None))
        log("full floor %.0f ms" % ops["full_push"]["floor_all"][-1])
        if index < FULL_ROUNDS - 1:
            drop_floor(name)
    previous = "full-%d" % (FULL_ROUNDS - 1)
    for index in range(ROUNDS):
        write(DELTA_MIB, "delta-%d.bin" % index)
        ms, sent = ours()
        if sent["mode"] != "delta":
            raise RuntimeError("the copy after a change went %s, not as a difference: %s" % (sent["mode"], sent))
        ops["delta_push"]["ours_all"].append(ms)
        ops["delta_push"]["ours_bytes"].append(sent["bytes"])
        name = "delta-%d" % index
        ops["delta_push"]["floor_all"].append(floor(guid, name, previous))
        ops["delta_push"]["floor_bytes"].append(floor_bytes(name, previous))
        log("delta ours %.0f ms (%d bytes), floor %.0f ms" % (ms, sent["bytes"], ops["delta_push"]["floor_all"][-1]))
        drop_floor(previous)
        previous = name
    # The commands each side starts for one difference (strace execve), outside the timed rounds.
    write(DELTA_MIB, "counted.bin")
    ops["delta_push"]["ours_commands"] = count_commands(ours)
    ops["delta_push"]["floor_commands"] = count_commands(lambda: floor(guid, "counted", previous))
    drop_floor(previous)
    drop_floor("counted")
    forget_on_target(guid)
    forget_here(guid)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="absent", force=True)
    report(ops, {"rounds": ROUNDS, "full_rounds": FULL_ROUNDS, "written_mib": WRITTEN_MIB, "delta_mib": DELTA_MIB,
                 "link": "qemu user networking between two TCG guests (guest A to the host's forwarded port of B)"})


if __name__ == "__main__":
    main()
