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

The other way to send a difference, changed extents, is measured in the same delta rounds
(``changed_extents``): a read-only snapshot, the image's extent maps in the previous and the new
snapshot (FIEMAP, no data read), and only the byte ranges whose extent changed streamed over the
same SSH into a writable snapshot of the target's previous copy. Its first round is checked: the
target's image then has the source's SHA-256.
"""

import bisect
import fcntl
import os
import shlex
import struct
import subprocess
import time

from floor import Bare, count_commands, log, median, report

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
# FIEMAP (linux/fiemap.h): struct fiemap, then fm_extent_count struct fiemap_extent.
FS_IOC_FIEMAP, FIEMAP_EXTENT_LAST, FIEMAP_BATCH = 0xC020660B, 0x1, 512
FIEMAP_HEAD = struct.Struct("<QQIIII")  # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, reserved
FIEMAP_EXTENT = struct.Struct("<QQQ16xI12x")  # fe_logical, fe_physical, fe_length, fe_flags
RANGE = struct.Struct("<QQ")  # a changed range on the wire: offset, length (0, 0 ends the stream)
# Writes each range at its offset of the target's image (argv[1]).
APPLY_RANGES = ("import os, struct, sys\n"
                "fd, inp = os.open(sys.argv[1], os.O_WRONLY), sys.stdin.buffer\n"
                "while True:\n"
                "    offset, length = struct.unpack('<QQ', inp.read(16))\n"
                "    if not length:\n"
                "        break\n"
                "    while length:\n"
                "        chunk = inp.read(min(length, 4 << 20))\n"
                "        if not chunk:\n"
                "            sys.exit('the stream ended inside a range')\n"
                "        os.pwrite(fd, chunk, offset)\n"
                "        offset, length = offset + len(chunk), length - len(chunk)\n"
                "os.fsync(fd)\n")


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


def extent_map(path):
    """(logical, physical, length) of each extent of the file at ``path``, in file order (FIEMAP)."""
    extents, start = [], 0
    with open(path, "rb") as handle:
        while True:
            request = bytearray(FIEMAP_HEAD.pack(start, 2 ** 64 - 1, 0, 0, FIEMAP_BATCH, 0)
                                + bytes(FIEMAP_EXTENT.size * FIEMAP_BATCH))
            fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, request)
            mapped, flags = FIEMAP_HEAD.unpack_from(request)[3], 0
            for index in range(mapped):
                logical, physical, length, flags = FIEMAP_EXTENT.unpack_from(
                    request, FIEMAP_HEAD.size + index * FIEMAP_EXTENT.size)
                extents.append((logical, physical, length))
            if not mapped or flags & FIEMAP_EXTENT_LAST:
                return extents
            start = extents[-1][0] + extents[-1][2]


def changed_ranges(old, new):
    """The byte ranges (offset, length) of ``new``'s data that is not the same on-disk data as ``old``'s.

    Both are extent maps of one file in two snapshots: a range is unchanged where both map it to
    the same physical bytes (the snapshot shares the extent), changed where the new map points
    elsewhere or the old one had a hole. Adjacent changed ranges are merged.
    """
    starts = [logical for logical, _physical, _length in old]
    changed = []
    for logical, physical, length in new:
        cursor, end = logical, logical + length
        while cursor < end:
            index = bisect.bisect_right(starts, cursor) - 1
            old_logical, old_physical, old_length = old[index] if index >= 0 else (0, 0, 0)
            if index >= 0 and cursor < old_logical + old_length:
                piece_end = min(end, old_logical + old_length)
                same = old_physical + (cursor - old_logical) == physical + (cursor - logical)
            else:  # a hole in the old map up to its next extent
                piece_end = min(end, starts[index + 1]) if index + 1 < len(starts) else end
                same = False
            if not same:
                if changed and changed[-1][0] + changed[-1][1] == cursor:
                    changed[-1] = (changed[-1][0], changed[-1][1] + piece_end - cursor)
                else:
                    changed.append((cursor, piece_end - cursor))
            cursor = piece_end
    return changed


def extents_push(guid, snapshot, parent):
    """The difference as changed extents: (ms, bytes of data sent). B's copy of ``parent`` is the base."""
    started = time.monotonic()
    copy = "%s/ext-%s" % (FLOOR_DIR, snapshot)  # the same path on both guests
    subprocess.run(["btrfs", "-q", "subvolume", "snapshot", "-r", LAYOUT.subvolume(guid), copy], check=True)
    image = "%s/%s" % (copy, _repository.IMAGE_NAME)
    ranges = changed_ranges(extent_map("%s/%s/%s" % (FLOOR_DIR, parent, _repository.IMAGE_NAME)), extent_map(image))
    receive = subprocess.Popen([*ROOT_SSH, "btrfs -q subvolume snapshot %s/%s %s && python3 -c %s %s" % (
        FLOOR_DIR, parent, copy, shlex.quote(APPLY_RANGES), image)], stdin=subprocess.PIPE)
    with open(image, "rb") as source:
        for offset, length in ranges:
            receive.stdin.write(RANGE.pack(offset, length))
            done = 0
            while done < length:
                chunk = os.pread(source.fileno(), min(length - done, 4 << 20), offset + done)
                receive.stdin.write(chunk)
                done += len(chunk)
        receive.stdin.write(RANGE.pack(0, 0))
    receive.stdin.close()
    if receive.wait() != 0:
        raise RuntimeError("changed extents: the target's writer failed (rc=%d)" % receive.returncode)
    return (time.monotonic() - started) * 1000, sum(length for _offset, length in ranges)


def same_image(snapshot):
    """SHA-256 of the image in A's floor snapshot and in B's changed-extents copy, equal (untimed)."""
    mine = subprocess.run(["sha256sum", "%s/%s/%s" % (FLOOR_DIR, snapshot, _repository.IMAGE_NAME)], check=True,
                          capture_output=True, text=True).stdout.split()[0]
    theirs = subprocess.run([*ROOT_SSH, "sha256sum %s/ext-%s/%s" % (FLOOR_DIR, snapshot, _repository.IMAGE_NAME)],
                            check=True, capture_output=True, text=True).stdout.split()[0]
    if mine != theirs:
        raise RuntimeError("changed extents: the target's image differs from the source's (%s, %s)" % (theirs, mine))


def drop_floor(snapshot, target_too=True):
    sh("btrfs -q subvolume delete %s/%s" % (FLOOR_DIR, snapshot))
    if target_too:
        on_target("btrfs -q subvolume delete %s/%s" % (FLOOR_DIR, snapshot))


def cold():
    """Nothing of the images in the page cache: each way of copying reads its data from disk."""
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")


def delta_rounds(ops, extents, guid, previous):
    """ROUNDS differences of DELTA_MIB each: ours, the floor (btrfs send -p) and changed extents."""
    for index in range(ROUNDS):
        write(DELTA_MIB, "delta-%d.bin" % index)
        cold()
        ms, sent = ours()
        if sent["mode"] != "delta":
            raise RuntimeError("the copy after a change went %s, not as a difference: %s" % (sent["mode"], sent))
        ops["delta_push"]["ours_all"].append(ms)
        ops["delta_push"]["ours_bytes"].append(sent["bytes"])
        name = "delta-%d" % index
        cold()
        ops["delta_push"]["floor_all"].append(floor(guid, name, previous))
        ops["delta_push"]["floor_bytes"].append(floor_bytes(name, previous))
        log("delta ours %.0f ms (%d bytes), floor %.0f ms" % (ms, sent["bytes"], ops["delta_push"]["floor_all"][-1]))
        cold()
        extent_ms, extent_bytes = extents_push(guid, name, previous)
        extents["all_ms"].append(extent_ms)
        extents["bytes"].append(extent_bytes)
        log("changed extents %.0f ms (%d bytes of data)" % (extent_ms, extent_bytes))
        if index == 0:
            same_image(name)
        drop_floor("ext-" + name)
        drop_floor(previous)
        previous = name
    return previous


def main():
    ops = {name: {"ours_all": [], "floor_all": [], "ours_bytes": [], "floor_bytes": []}
           for name in ("full_push", "delta_push")}
    extents = {"all_ms": [], "bytes": []}
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
    previous = delta_rounds(ops, extents, guid, "full-%d" % (FULL_ROUNDS - 1))
    # The commands each side starts for one difference (strace execve), outside the timed rounds.
    write(DELTA_MIB, "counted.bin")
    ops["delta_push"]["ours_commands"] = count_commands(ours)
    ops["delta_push"]["floor_commands"] = count_commands(lambda: floor(guid, "counted", previous))
    drop_floor(previous)
    drop_floor("counted")
    forget_on_target(guid)
    forget_here(guid)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="absent", force=True)
    extents["ms"] = median(extents["all_ms"])
    report(ops, {"changed_extents": extents, "rounds": ROUNDS, "full_rounds": FULL_ROUNDS, "written_mib": WRITTEN_MIB,
                 "delta_mib": DELTA_MIB,
                 "link": "qemu user networking between two TCG guests (guest A to the host's forwarded port of B)"})


if __name__ == "__main__":
    main()
