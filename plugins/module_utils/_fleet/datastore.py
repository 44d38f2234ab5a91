# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The BTRFS datastore: observe the host, plan the steps, apply them, report.

A datastore is a BTRFS filesystem on a fixed-size pool file (loop-mounted) or on an
existing block device, mounted at ``path`` by a systemd mount unit that is enabled so
it comes back at boot. Every step is derived from what is observed, so a run that was
interrupted half-way is completed by the next one.
"""

from __future__ import annotations

import os
import posixpath

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.paths import check_absolute_path
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.size import MIB, format_size, parse_size, round_up
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import findmnt as _findmnt
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import losetup as _losetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import lsblk as _lsblk
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import mount as _mount
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

DEFAULT_PATH = "/mnt/rediacc"
DEFAULT_POOL_FILE = "/var/lib/rediacc/datastore.pool"
LABEL = "lockbox-datastore"


class Spec:
    """What the operator asked for, validated before anything on the host is touched."""

    def __init__(self, path, *, state="present", pool_file=None, device=None, size=None, force=False):
        if state not in ("present", "absent"):
            raise InvalidInput("state must be present or absent, got %r" % (state,))
        self.state = state
        self.force = bool(force)
        self.path = check_absolute_path(path, "path")
        if pool_file and device:
            raise InvalidInput("pool_file and device are mutually exclusive")
        self.device = check_absolute_path(device, "device", allow_system=True) if device else None
        if self.device and not self.device.startswith("/dev/"):
            raise InvalidInput("device must be a block device under /dev, got %r" % device)
        self.pool_file = None if self.device else check_absolute_path(pool_file or DEFAULT_POOL_FILE, "pool_file")
        if self.pool_file and (self.pool_file == self.path or self.pool_file.startswith(self.path + "/")):
            raise InvalidInput("pool_file %s must not live inside the datastore path %s" % (self.pool_file, self.path))
        self.size = None
        if size is not None and size != "":
            if self.device:
                raise InvalidInput("size applies to a pool file; a device datastore always fills its device")
            self.size = round_up(parse_size(size, "size"), MIB)
            if self.size < _btrfs.MIN_FILESYSTEM_SIZE:
                raise InvalidInput("size %s is below the minimum datastore size of %s"
                                   % (format_size(self.size), format_size(_btrfs.MIN_FILESYSTEM_SIZE)))
        self.unit = _systemd.mount_unit_name(self.path)

    @property
    def backing(self):
        return self.device or self.pool_file

    def unit_content(self):
        lines = [
            "# Managed by lockbox.fleet.datastore: the BTRFS datastore at %s." % self.path,
            "# Changes here are overwritten on the next run.",
            "[Unit]",
            "Description=lockbox datastore %s" % self.path,
        ]
        if self.pool_file:
            # The pool file lives on another filesystem that must be mounted first.
            lines.append("RequiresMountsFor=%s" % posixpath.dirname(self.pool_file))
        lines += [
            "",
            "[Mount]",
            "What=%s" % self.backing,
            "Where=%s" % self.path,
            "Type=btrfs",
            # mount(8) sets up the loop device with autoclear, so unmounting frees it.
            "Options=%s" % ("loop,noatime" if self.pool_file else "noatime"),
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
        return "\n".join(lines)


class Observed:
    """What is on the host now. Read-only: observing never changes anything."""

    def __init__(self, spec, runner):
        self.unit_file = _systemd.read_unit_file(spec.unit)
        self.unit = _systemd.unit_status(runner, spec.unit)
        self.mount = _findmnt.mount_at(runner, spec.path)
        self.backing_exists = os.path.exists(spec.backing)
        if spec.device and self.backing_exists and not _is_block_device(spec.device):
            raise InvalidInput("device %s is not a block device" % spec.device)
        if spec.pool_file and self.backing_exists and not os.path.isfile(spec.pool_file):
            raise InvalidInput("pool_file %s exists and is not a regular file" % spec.pool_file)
        self.backing_size = None
        if self.backing_exists:
            self.backing_size = (os.path.getsize(spec.pool_file) if spec.pool_file
                                 else _lsblk.device_size(runner, spec.device))
        self.signature = _lsblk.probe(runner, spec.backing) if self.backing_exists else {}
        self.loop_devices = _losetup.devices_for(runner, spec.pool_file) if spec.pool_file else []
        self.host_free = _free_bytes_near(spec.pool_file) if spec.pool_file else None
        self.usage = None
        self.loop_size = None
        if self.mount:
            if self.mount["fstype"] != "btrfs":
                raise LockboxError("%s is already a mount point of a %s filesystem (%s), not a lockbox datastore"
                                   % (spec.path, self.mount["fstype"], self.mount["source"]))
            self.usage = _btrfs.usage(runner, spec.path)
            if spec.pool_file:
                self.loop_size = _lsblk.device_size(runner, self.mount["source"])

    def mounted_from_backing(self, spec):
        if not self.mount:
            return False
        if spec.device:
            return os.path.realpath(self.mount["source"]) == os.path.realpath(spec.device)
        return any(d["name"] == self.mount["source"] for d in self.loop_devices)

    def summary(self, spec):
        """The before/after shape used for diff mode and results."""
        return {
            "state": "present" if (self.backing_exists and self.signature.get("TYPE") == "btrfs") else "absent",
            "size": self.usage["device_size"] if self.usage else self.backing_size,
            "mounted": bool(self.mount),
            "unit_enabled": self.unit["enabled"],
        }


def _free_bytes_near(path):
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    directory = posixpath.dirname(path)
    while not os.path.isdir(directory):
        directory = posixpath.dirname(directory)
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def _check_room(spec, obs, new_size):
    """Refuse before touching anything when the host cannot hold the pool file."""
    needed = new_size - (obs.backing_size or 0)
    if obs.host_free is not None and needed > obs.host_free:
        raise InvalidInput("not enough free space for %s: it needs %s more, the host filesystem has %s free"
                           % (spec.pool_file, format_size(needed), format_size(obs.host_free)))


def _is_block_device(path):
    import stat
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def plan(spec, observed, runner):
    if spec.state == "absent":
        return _plan_absent(spec, observed, runner)
    return _plan_present(spec, observed, runner)


def _plan_present(spec, obs, runner):
    actions = []
    if obs.mount and not obs.mounted_from_backing(spec):
        raise LockboxError("%s is mounted from %s, not from %s; unmount it or choose another path"
                           % (spec.path, obs.mount["source"], spec.backing))
    fstype = obs.signature.get("TYPE")
    if spec.pool_file:
        if not obs.backing_exists:
            if spec.size is None:
                raise InvalidInput("size is required to create the pool file %s" % spec.pool_file)
            _check_room(spec, obs, spec.size)
            actions.append(Action("create-pool-file", "allocate %s at %s" % (format_size(spec.size), spec.pool_file),
                                  lambda: _allocate(spec.pool_file, spec.size)))
        elif spec.size is not None and spec.size < obs.backing_size:
            raise InvalidInput("shrinking is refused: %s is %s, asked for %s (a BTRFS datastore only grows)"
                               % (spec.pool_file, format_size(obs.backing_size), format_size(spec.size)))
    elif not obs.backing_exists:
        raise InvalidInput("device %s does not exist" % spec.device)

    if fstype is None:
        actions.append(Action("format", "mkfs.btrfs on %s" % spec.backing,
                              lambda: _btrfs.mkfs(runner, spec.backing, LABEL)))
    elif fstype != "btrfs":
        raise LockboxError("%s holds a %s filesystem, not BTRFS; refusing to format over it (wipe it first)"
                           % (spec.backing, fstype))

    content = spec.unit_content()
    if obs.unit_file != content:
        actions.append(Action("write-unit", "%s %s" % ("update" if obs.unit_file else "create", spec.unit),
                              lambda: (_systemd.write_unit_file(spec.unit, content),
                                       _systemd.systemctl(runner, "daemon-reload"))))
    if not obs.unit["enabled"]:
        actions.append(Action("enable-unit", "enable %s so the datastore mounts at boot" % spec.unit,
                              lambda: _systemd.systemctl(runner, "enable", spec.unit)))
    if not obs.mount:
        actions.append(Action("mount", "start %s (mount %s at %s)" % (spec.unit, spec.backing, spec.path),
                              lambda: _systemd.systemctl(runner, "start", spec.unit)))

    actions += _plan_grow(spec, obs, runner)
    return actions


def _plan_grow(spec, obs, runner):
    """Grow in three observable steps so an interrupted grow is finished by a re-run.

    Pool file larger than asked for -> loop device sees it -> filesystem fills it.
    The filesystem size comes from the mounted filesystem, or from its superblock
    (blkid FSSIZE) while unmounted, so a grow planned before the mount still lands.
    """
    if not obs.backing_exists:
        return []
    actions = []
    target = obs.backing_size
    if spec.pool_file and spec.size is not None and spec.size > obs.backing_size:
        target = spec.size
        _check_room(spec, obs, spec.size)
        actions.append(Action("grow-pool-file", "grow %s from %s to %s" % (
            spec.pool_file, format_size(obs.backing_size), format_size(spec.size)),
            lambda: _allocate(spec.pool_file, spec.size)))
    if obs.mount and spec.pool_file and (actions or (obs.loop_size or 0) < target):
        loop = obs.mount["source"]
        actions.append(Action("refresh-loop", "losetup --set-capacity %s" % loop,
                              lambda: _losetup.refresh_capacity(runner, loop)))
    if obs.usage:
        fs_size = obs.usage["device_size"]
    else:
        fs_size = int(obs.signature.get("FSSIZE") or target)
    if fs_size < target:
        actions.append(Action("grow-filesystem", "btrfs filesystem resize max %s (%s -> %s)" % (
            spec.path, format_size(fs_size), format_size(target)),
            lambda: _btrfs.grow_to_max(runner, spec.path)))
    return actions


def _plan_absent(spec, obs, runner):
    actions = []
    if obs.mount:
        if not obs.mounted_from_backing(spec):
            raise LockboxError("%s is mounted from %s, not from %s; refusing to unmount a foreign filesystem"
                               % (spec.path, obs.mount["source"], spec.backing))
        actions.append(Action("unmount", "stop %s" % spec.unit,
                              lambda: _systemd.systemctl(runner, "stop", spec.unit)))
    if obs.unit["enabled"]:
        actions.append(Action("disable-unit", "disable %s" % spec.unit,
                              lambda: _systemd.systemctl(runner, "disable", spec.unit)))
    if obs.unit_file is not None:
        actions.append(Action("remove-unit", "remove %s" % spec.unit,
                              lambda: (_systemd.remove_unit_file(spec.unit),
                                       _systemd.systemctl(runner, "daemon-reload"))))
    if spec.pool_file and obs.backing_exists:
        for loop in obs.loop_devices:
            if not (obs.mount and loop["name"] == obs.mount["source"]):
                actions.append(Action("detach-loop", "losetup -d %s" % loop["name"],
                                      lambda name=loop["name"]: _losetup.detach(runner, name)))
        actions.append(Action("delete-pool-file", "delete %s" % spec.pool_file,
                              lambda: os.unlink(spec.pool_file)))
    elif spec.device and obs.signature.get("TYPE") == "btrfs":
        actions.append(Action("wipe-device", "wipefs -a %s" % spec.device,
                              lambda: _mount.wipe_signatures(runner, spec.device)))
    if actions and not spec.force:
        raise InvalidInput("state=absent destroys the datastore at %s and every repository in it; "
                           "set force=true to do that (planned: %s)"
                           % (spec.path, ", ".join(a.name for a in actions)))
    return actions


def _allocate(path, size):
    """Reserve the whole pool up front: a fixed-size pool never runs the host disk dry."""
    directory = posixpath.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        os.fsync(fd)
    except OSError as exc:
        raise LockboxError("cannot allocate %s for %s: %s" % (format_size(size), path, exc.strerror)) from None
    finally:
        os.close(fd)


def converge_datastore(runner, spec, check_mode=False):
    """Observe, plan, apply (unless check mode) and report. Returns the result dict."""
    before = Observed(spec, runner)
    actions = plan(spec, before, runner)
    after = before
    if actions and not check_mode:
        apply_plan(actions)
        after = Observed(spec, runner)
    after_summary = after.summary(spec)
    usage = after.usage
    if check_mode and actions:
        # Predict what the plan leads to; free space is only known once it is real.
        after_summary = _predict(spec, after_summary)
        usage = None
    return {
        "changed": bool(actions),
        "actions": [a.report() for a in actions],
        "datastore": dict(after_summary, path=spec.path, unit=spec.unit, backing=spec.backing,
                          free=usage["free_estimated"] if usage else None,
                          used=usage["used"] if usage else None),
        "diff": {"before": before.summary(spec), "after": after_summary},
    }


def _predict(spec, current):
    if spec.state == "absent":
        return {"state": "absent", "size": None, "mounted": False, "unit_enabled": False}
    return {"state": "present", "size": spec.size or current["size"], "mounted": True, "unit_enabled": True}


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.datastore."""
    spec = Spec(path=params["path"], state=params["state"],
                pool_file=None if params.get("device") else params.get("pool_file"),
                device=params.get("device"), size=params.get("size"), force=params.get("force", False))
    return converge_datastore(runner, spec, check_mode=check_mode)
