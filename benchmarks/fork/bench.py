# SPDX-License-Identifier: GPL-3.0-or-later
"""Fork benchmark, run inside a test guest with the collection on sys.path.

Forks a repository holding 1 GiB and one holding 16 GiB of written data, each freshly
written and then fragmented by random 4 KiB writes, while a process in the parent keeps
writing. Each round runs ours (the library the modules use) and the floor (bare commands:
fsfreeze + btrfs subvolume snapshot + thaw, cryptsetup luksUUID, losetup + cryptsetup open +
mount; benchmarks/floor.py) one after the other. Prints ours / floor for the clone step and
the whole fork, the clone step's growth from 1 GiB fresh to 16 GiB fragmented, and ours / floor
for opening a closed random-key repository, with the programs each path starts.
"""

import os
import random
import subprocess
import time
import uuid

from floor import Bare, count_commands, delete_leftovers, log, median, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import btrfs_fork as _btrfs_fork
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository

KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
GIB = 1024 ** 3
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CASES = [("1GiB", 1, 50_000), ("16GiB", 16, 250_000)]


def sh(command):
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout.strip()


def write_data(mount, gib):
    started = time.monotonic()
    sh("dd if=/dev/zero of=%s/data.bin bs=4M count=%d conv=fsync status=none" % (mount, gib * 256))
    log("  wrote %d GiB in %.0f s" % (gib, time.monotonic() - started))


def fragment(mount, writes):
    """Random 4 KiB overwrites inside the repository: each lands in the image as its own extent."""
    path = "%s/data.bin" % mount
    size = os.path.getsize(path)
    blocks = size // 4096
    started = time.monotonic()
    fd = os.open(path, os.O_WRONLY)
    try:
        for index in range(writes):
            os.pwrite(fd, os.urandom(4096), random.randrange(blocks) * 4096)
            # Flush often: a TCG guest with gigabytes of dirty pages stalls for minutes.
            if index % 5_000 == 4_999:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    sh("sync")
    log("  %d random 4 KiB writes in %.0f s" % (writes, time.monotonic() - started))


def extents(image):
    # filefrag prints "<file>: N extents found"
    return int(sh("filefrag %s" % image).rsplit(":", 1)[1].split()[0])


def ours_fork(layout, runner, parent, tag):
    result = _btrfs_fork.fork_repo(runner, layout, parent["name"], tag, opened=True, key=KEY)
    if not result["repository"]["mounted"]:
        raise RuntimeError("the fork is not mounted: %r" % result)
    return result


def floor_fork(bare, layout, parent, guid):
    """freeze + snapshot + thaw, new LUKS UUID, loop + open + mount; returns (clone ms, loop)."""
    started = time.monotonic()
    bare.run(["fsfreeze", "--freeze", layout.mount(parent["guid"])])
    try:
        bare.run(["btrfs", "subvolume", "snapshot", layout.subvolume(parent["guid"]), layout.subvolume(guid)])
    finally:
        bare.run(["fsfreeze", "--unfreeze", layout.mount(parent["guid"])])
    clone = (time.monotonic() - started) * 1000
    bare.run(["cryptsetup", "luksUUID", "--batch-mode", "--uuid", guid, layout.image(guid)])
    loop = floor_open(bare, layout, guid)
    return clone, loop


def floor_open(bare, layout, guid):
    os.makedirs(layout.mount(guid), exist_ok=True)
    loop = bare.run(["losetup", "--find", "--show", layout.image(guid)])
    bare.run(["cryptsetup", "open", "--type", "luks2", "--key-file=-", loop, layout.mapper(guid)], stdin=KEY.material)
    bare.run(["mount", "-o", "noatime", layout.mapper_device(guid), layout.mount(guid)])
    return loop


def floor_close(layout, guid, loop, delete):
    sh("umount %s && cryptsetup close %s && losetup --detach %s" % (layout.mount(guid), layout.mapper(guid), loop))
    if delete:
        sh("btrfs subvolume delete %s && rmdir %s" % (layout.subvolume(guid), layout.mount(guid)))


def with_writer(layout, parent, action, *args):
    """(ms, result) of ``action(*args)`` while a process in the parent appends every 10 ms (a live parent)."""
    writer = subprocess.Popen(["sh", "-c", "while :; do date +%%s%%N >> %s/writer.log; sleep 0.01; done"
                               % layout.mount(parent["guid"])])
    try:
        time.sleep(0.5)
        started = time.monotonic()
        result = action(*args)
        return (time.monotonic() - started) * 1000, result
    finally:
        writer.terminate()
        writer.wait()


def measure(layout, runner, name, label, bare):
    parent = next(r for r in _repo_info.info(runner, layout, name))
    row = {"case": label, "extents": extents(parent["image"]),
           "clone": {"ours_all": [], "floor_all": []}, "fork": {"ours_all": [], "floor_all": []}}
    for round_ in range(ROUNDS):
        elapsed, result = with_writer(layout, parent, ours_fork, layout, runner, parent, "bench%d" % round_)
        row["fork"]["ours_all"].append(elapsed)
        row["clone"]["ours_all"].append(result["timings_ms"]["clone"])
        _luks_repo.converge_repo(runner, layout, result["repository"]["name"], state="absent", force=True)
        guid = str(uuid.uuid4())
        elapsed, (clone, loop) = with_writer(layout, parent, floor_fork, bare, layout, parent, guid)
        row["fork"]["floor_all"].append(elapsed)
        row["clone"]["floor_all"].append(clone)
        floor_close(layout, guid, loop, delete=True)
    for step in ("clone", "fork"):
        op = row[step]
        op["ours_ms"], op["floor_ms"] = median(op["ours_all"]), median(op["floor_all"])
        op["ratio"] = round(op["ours_ms"] / op["floor_ms"], 2)
    log("  %-18s extents %7d  clone ours %7.1f floor %7.1f (%.2fx)  fork ours %7.1f floor %7.1f (%.2fx)"
        % (label, row["extents"], row["clone"]["ours_ms"], row["clone"]["floor_ms"], row["clone"]["ratio"],
           row["fork"]["ours_ms"], row["fork"]["floor_ms"], row["fork"]["ratio"]))
    return row


def open_rounds(layout, runner, name, bare):
    op = {"ours_all": [], "floor_all": []}
    guid = _repo_info.info(runner, layout, name)[0]["guid"]
    for _round in range(ROUNDS):
        _luks_repo.converge_repo(runner, layout, name, state="closed")
        started = time.monotonic()
        _luks_repo.converge_repo(runner, layout, name, state="opened", key=KEY)
        op["ours_all"].append((time.monotonic() - started) * 1000)
        _luks_repo.converge_repo(runner, layout, name, state="closed")
        started = time.monotonic()
        loop = floor_open(bare, layout, guid)
        op["floor_all"].append((time.monotonic() - started) * 1000)
        floor_close(layout, guid, loop, delete=False)
    _luks_repo.converge_repo(runner, layout, name, state="opened", key=KEY)
    return op


def count_each(layout, runner, name):
    """One traced round of each path: the programs each one starts."""
    parent = _repo_info.info(runner, layout, name)[0]
    counts, holder = {}, {}
    counts["fork_ours"] = count_commands(lambda: holder.update(result=ours_fork(layout, runner, parent, "traced")))
    _luks_repo.converge_repo(runner, layout, holder["result"]["repository"]["name"], state="absent", force=True)
    guid = str(uuid.uuid4())
    counts["fork_floor"] = count_commands(lambda: holder.update(run=floor_fork(Bare(), layout, parent, guid)))
    floor_close(layout, guid, holder["run"][1], delete=True)
    _luks_repo.converge_repo(runner, layout, name, state="closed")
    counts["open_ours"] = count_commands(lambda: _luks_repo.converge_repo(runner, layout, name, state="opened",
                                                                          key=KEY))
    _luks_repo.converge_repo(runner, layout, name, state="closed")
    counts["open_floor"] = count_commands(lambda: holder.update(loop=floor_open(Bare(), layout, parent["guid"])))
    floor_close(layout, parent["guid"], holder["loop"], delete=False)
    _luks_repo.converge_repo(runner, layout, name, state="opened", key=KEY)
    return counts


def main():
    layout = _repository.Layout()
    runner = Runner()
    rows, bare = [], Bare()
    delete_leftovers(runner, layout, lambda name: name.startswith("bench-"))
    for label, gib, writes in CASES:
        name = "bench-%s" % label.lower()
        log("%s: create and write" % label)
        _luks_repo.converge_repo(runner, layout, name, state="opened", size="%dG" % (gib + 2), key=KEY)
        mount = layout.mount(_repo_info.info(runner, layout, name)[0]["guid"])
        write_data(mount, gib)
        rows.append(measure(layout, runner, name, "%s fresh" % label, bare))
        fragment(mount, writes)
        rows.append(measure(layout, runner, name, "%s fragmented" % label, bare))
    counts = count_each(layout, runner, "bench-1gib")
    by_case = {r["case"]: r for r in rows}
    operations = {
        "fork_clone_step": dict(by_case["1GiB fresh"]["clone"], ours_commands=None, floor_commands=None),
        "fork_opened": dict(by_case["1GiB fresh"]["fork"], ours_commands=counts["fork_ours"],
                            floor_commands=counts["fork_floor"]),
        "open_from_closed": dict(open_rounds(layout, runner, "bench-1gib", bare), ours_commands=counts["open_ours"],
                                 floor_commands=counts["open_floor"]),
    }
    clone_growth = round(by_case["16GiB fragmented"]["clone"]["ours_ms"] / by_case["1GiB fresh"]["clone"]["ours_ms"], 2)
    log("clone step 16 GiB fragmented / 1 GiB fresh: %.2f" % clone_growth)
    report(operations, {"rounds": ROUNDS, "cases": rows, "clone_16g_fragmented_vs_1g_fresh": clone_growth,
                        "floor_steps": bare.steps})
    for label, _gib, _writes in CASES:
        _luks_repo.converge_repo(runner, layout, "bench-%s" % label.lower(), state="absent", force=True)


if __name__ == "__main__":
    main()
