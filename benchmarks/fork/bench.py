# SPDX-License-Identifier: GPL-3.0-or-later
"""Fork benchmark, run inside a test guest with the collection on sys.path.

Forks a repository holding 1 GiB and one holding 16 GiB of written data, each freshly
written and then fragmented by random 4 KiB writes, while a service in the parent keeps
writing. Prints the clone step (freeze + snapshot + thaw) and the whole fork (clone ->
opened and mounted) in ms, their 16 GiB / 1 GiB ratios, and the time to open a closed
random-key repository. Calls the same library the modules use (no Ansible transport).
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import btrfs_fork as _btrfs_fork
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository

KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
GIB = 1024 ** 3
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CASES = [("1GiB", 1, 50_000), ("16GiB", 16, 250_000)]


def log(message):
    print(message, file=sys.stderr, flush=True)


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


def fork_once(layout, runner, parent, tag):
    writer = subprocess.Popen(["sh", "-c", "while :; do date +%%s%%N >> %s/writer.log; sleep 0.01; done"
                               % layout.mount(parent["guid"])])
    try:
        time.sleep(0.5)
        started = time.monotonic()
        result = _btrfs_fork.fork_repo(runner, layout, parent["name"], tag, opened=True, key=KEY)
        whole = (time.monotonic() - started) * 1000
    finally:
        writer.terminate()
        writer.wait()
    if not result["repository"]["mounted"]:
        raise RuntimeError("the fork is not mounted: %r" % result)
    _luks_repo.converge_repo(runner, layout, result["repository"]["name"], state="absent", force=True)
    return result["timings_ms"], whole


def measure(layout, runner, name, label):
    parent = next(r for r in _repo_info.info(runner, layout, name))
    steps, wholes = [], []
    for round_ in range(ROUNDS):
        timings, whole = fork_once(layout, runner, parent, "bench%d" % round_)
        steps.append(timings)
        wholes.append(whole)
    clones = [t["clone"] for t in steps]
    row = {"case": label, "extents": extents(parent["image"]), "clone_ms": statistics.median(clones),
           "whole_ms": statistics.median(wholes), "clone_all": clones, "whole_all": wholes,
           # median of each step, to show where the whole fork's time goes
           "steps_ms": {name: statistics.median(t[name] for t in steps) for name in steps[0]}}
    log("  %-18s extents %7d  clone %7.1f ms  whole %7.1f ms  steps %s"
        % (label, row["extents"], row["clone_ms"], row["whole_ms"], row["steps_ms"]))
    return row


def open_time(layout, runner, name):
    times, steps = [], []
    for _round in range(ROUNDS):
        _luks_repo.converge_repo(runner, layout, name, state="closed")
        started = time.monotonic()
        result = _luks_repo.converge_repo(runner, layout, name, state="opened", key=KEY)
        times.append((time.monotonic() - started) * 1000)
        steps.append(result["timings_ms"])
    return statistics.median(times), times, steps


def main():
    layout = _repository.Layout()
    runner = Runner()
    rows = []
    for label, gib, writes in CASES:
        name = "bench-%s" % label.lower()
        log("%s: create and write" % label)
        _luks_repo.converge_repo(runner, layout, name, state="opened", size="%dG" % (gib + 2), key=KEY)
        mount = layout.mount(_repo_info.info(runner, layout, name)[0]["guid"])
        write_data(mount, gib)
        rows.append(measure(layout, runner, name, "%s fresh" % label))
        fragment(mount, writes)
        rows.append(measure(layout, runner, name, "%s fragmented" % label))
    opened_ms, opened_all, open_steps = open_time(layout, runner, "bench-1gib")
    log("open from closed: %.1f ms (median of %r), steps %r" % (opened_ms, opened_all, open_steps))
    by_case = {r["case"]: r for r in rows}
    ratios = {}
    for kind in ("fresh", "fragmented"):
        small, large = by_case["1GiB %s" % kind], by_case["16GiB %s" % kind]
        ratios[kind] = {"clone": round(large["clone_ms"] / small["clone_ms"], 2),
                        "whole": round(large["whole_ms"] / small["whole_ms"], 2)}
    print(json.dumps({"rows": rows, "ratios_16_vs_1": ratios, "open_ms": opened_ms, "open_all": opened_all,
                      "open_steps_ms": open_steps},
                     indent=2))
    for label, _gib, _writes in CASES:
        _luks_repo.converge_repo(runner, layout, "bench-%s" % label.lower(), state="absent", force=True)


if __name__ == "__main__":
    main()
