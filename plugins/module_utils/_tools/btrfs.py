# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""btrfs-progs: format, usage, online resize, subvolumes and snapshots."""

from __future__ import annotations

import os

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

# mkfs.btrfs refuses devices below about 114 MB; smaller datastores are useless anyway.
MIN_FILESYSTEM_SIZE = 256 * 1024 ** 2

_USAGE_KEYS = {
    "Device size": "device_size",
    "Device allocated": "allocated",
    "Device unallocated": "unallocated",
    "Device slack": "slack",
    "Used": "used",
    "Free (estimated)": "free_estimated",
    "Free (statfs, df)": "free_statfs",
}


def parse_usage(text):
    """Parse the "Overall:" block of ``btrfs filesystem usage -b`` (raw byte counts).

    btrfs-progs 6.14 has no JSON form of this command; its overall block is a stable
    ``key: value`` list, and we read only the first number of each known key.
    """
    usage = {}
    for line in text.splitlines():
        if not line.startswith("    ") or ":" not in line:
            continue
        key, _sep, rest = line.strip().partition(":")
        field = _USAGE_KEYS.get(key.strip())
        if field is None or not rest.split():
            continue
        try:
            usage[field] = int(rest.split()[0])
        except ValueError:
            raise LockboxError(
                "unexpected value for %r in btrfs filesystem usage: %r" % (key, rest.strip())) from None
    missing = {"device_size", "used", "free_estimated"} - set(usage)
    if missing:
        raise LockboxError("btrfs filesystem usage output lacks %s" % ", ".join(sorted(missing)),
                           stdout=text)
    usage.setdefault("slack", 0)
    return usage


def usage(runner, mountpoint):
    return parse_usage(runner.run(["btrfs", "filesystem", "usage", "-b", mountpoint]).stdout)


def mkfs(runner, target, label):
    runner.run(["mkfs.btrfs", "--quiet", "--label", label, target])


def grow_to_max(runner, mountpoint):
    """Grow the filesystem's single device to the size of what backs it, online."""
    runner.run(["btrfs", "filesystem", "resize", "max", mountpoint])


def is_subvolume(path):
    """The root directory of every BTRFS subvolume has inode 256."""
    try:
        return os.stat(path).st_ino == 256
    except OSError:
        return False


# The identity fields of ``btrfs subvolume show`` (btrfs-progs 6.14 has no JSON form of it).
_SHOW_KEYS = {"UUID": "uuid", "Parent UUID": "parent_uuid", "Received UUID": "received_uuid",
              "Creation time": "created", "Subvolume ID": "id", "Generation": "generation", "Flags": "flags",
              "Gen at creation": "created_generation"}


def parse_subvolume_show(text):
    """{"path", "uuid", "parent_uuid", "received_uuid", "created", "id", "generation", "readonly"} of
    ``btrfs subvolume show``; a "-" is None. ``received_uuid`` is the sent snapshot's ``uuid``."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise LockboxError("btrfs subvolume show printed nothing")
    found = {"path": lines[0].strip()}
    for line in lines[1:]:
        key, colon, value = line.strip().partition(":")
        if colon and key in _SHOW_KEYS:
            value = value.strip()
            found[_SHOW_KEYS[key]] = None if value in ("", "-") else value
    if not found.get("uuid"):
        raise LockboxError("btrfs subvolume show of %s has no UUID line" % found["path"])
    for key in ("id", "generation", "created_generation"):
        found[key] = int(found[key]) if found.get(key) else None
    found["readonly"] = "readonly" in (found.pop("flags", None) or "").split()
    return found


def subvolume_show(runner, path):
    return parse_subvolume_show(runner.run(["btrfs", "subvolume", "show", path]).stdout)


def subvolume_create(runner, path):
    runner.run(["btrfs", "subvolume", "create", path])


def subvolume_delete(runner, path):
    runner.run(["btrfs", "subvolume", "delete", path])


# Freeze, snapshot, thaw, in a process of its own session: if the caller is killed
# mid-way, the thaw still runs (a parent left frozen would hang its applications).
_FROZEN_SNAPSHOT = r"""
set -u
mount=$1 source=$2 target=$3 errors=$4 pause_marker=$5
fsfreeze --freeze "$mount" 2>"$errors" || exit 10
trap 'fsfreeze --unfreeze "$mount"' EXIT
if [ -n "$pause_marker" ]; then
    # Fault injection for the kill tests: stay frozen a while, so the caller can be killed.
    echo "$6 frozen" > "$pause_marker"
    sleep 5
fi
btrfs subvolume snapshot ${7:-} "$source" "$target" >/dev/null 2>>"$errors"
"""


def snapshot(runner, source, target, *, freeze=None, errors="/dev/null", pause_marker="", readonly=False):
    """Snapshot subvolume ``source`` as ``target`` (``readonly``: what ``btrfs send`` needs); freeze
    the filesystem at ``freeze`` (the repository's mount point) only for that instant so the copy
    is clean."""
    flag = "-r" if readonly else ""
    if freeze is None:
        runner.run(["btrfs", "subvolume", "snapshot"] + ([flag] if flag else []) + [source, target])
        return
    runner.run(["setsid", "--wait", "sh", "-c", _FROZEN_SNAPSHOT, "lockbox-snapshot",
                freeze, source, target, errors, pause_marker, str(os.getpid())] + ([flag] if flag else []))


def thaw(runner, mount):
    """Thaw a filesystem an interrupted fork may have left frozen (an error if it is not)."""
    runner.run(["fsfreeze", "--unfreeze", mount], ok_rcs=(0, 1))


def parse_find_new(text):
    """The generations of the extents ``btrfs subvolume find-new`` lists (its last line is the marker)."""
    generations = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["inode"] and "gen" in words:
            generations.append(int(words[words.index("gen") + 1]))
    return generations


def written_since(runner, subvolume, generation):
    """Whether any file data of ``subvolume`` was written after transaction ``generation``."""
    listed = runner.run(["btrfs", "subvolume", "find-new", subvolume, str(generation + 1)]).stdout
    return any(g > generation for g in parse_find_new(listed))


def send_argv(snapshot_path, parent=None):
    """``btrfs send`` of a read-only snapshot to stdout, as the difference from ``parent`` if given."""
    return ["btrfs", "send", "-q"] + (["-p", parent] if parent else []) + [snapshot_path]


def receive_argv(directory):
    """``btrfs receive`` from stdin, confined (chroot) to ``directory``: a stream may only make its one subvolume."""
    return ["btrfs", "receive", "-C", directory]
