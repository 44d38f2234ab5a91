# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Repositories: LUKS2 images in BTRFS subvolumes of the datastore, forks, info, prune.

Each operation observes the host, plans a list of actions, applies them (unless in check
mode) and reports. A record in the host state directory is written before anything else
with a status saying what is under way, so an operation killed half way is either
finished (grow, open, close) or rolled back and redone (create, fork) by the next run,
and ``prune`` can clean up after anything else.
"""

from __future__ import annotations

import os
import stat

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.paths import check_absolute_path
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.size import MIB, format_size, parse_size, round_up
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import e2fs as _e2fs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import losetup as _losetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import lsblk as _lsblk
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import mount as _mount

DEFAULT_DATASTORE = "/mnt/rediacc"
MAPPER_PREFIX = "lockbox-"
IMAGE_NAME = "disk.img"
# LUKS2 header (16 MiB) plus a usable ext4.
MIN_REPO_SIZE = 64 * MIB
MOUNT_OPTIONS = "noatime"


class Layout:
    """Where a repository's pieces live on a host; every path is a role variable."""

    def __init__(self, datastore=DEFAULT_DATASTORE, mount_root=None, state_dir=_state.DEFAULT_STATE_DIR):
        self.datastore = check_absolute_path(datastore, "datastore")
        self.mount_root = check_absolute_path(mount_root or self.datastore + "/mounts", "mount_root")
        self.state_dir = check_absolute_path(state_dir, "state_dir")
        self.repositories = self.datastore + "/repositories"

    def subvolume(self, guid):
        return "%s/%s" % (self.repositories, guid)

    def image(self, guid):
        return "%s/%s/%s" % (self.repositories, guid, IMAGE_NAME)

    def mount(self, guid):
        return "%s/%s" % (self.mount_root, guid)

    def snapshots(self, guid):
        """Read-only snapshots of a repository kept as the base of its next copy to another host."""
        return "%s/snapshots/%s" % (self.datastore, guid)

    def backups(self, guid):
        """Read-only snapshots of a repository kept as its backups (lockbox.fleet.repo_backup)."""
        return "%s/backups/%s" % (self.datastore, guid)

    @staticmethod
    def mapper(guid):
        return MAPPER_PREFIX + guid

    @staticmethod
    def mapper_device(guid):
        return "/dev/mapper/" + MAPPER_PREFIX + guid

    def check_datastore(self):
        if not os.path.ismount(self.datastore):
            raise LockboxError("the datastore %s is not mounted: run machine_setup.yml (lockbox.fleet.datastore) first"
                               % self.datastore)


class Key:
    """Key material. Its repr never shows the secret, so it cannot leak into results."""

    __slots__ = ("kind", "material")

    def __init__(self, material, kind):
        self.material = material
        self.kind = kind

    def __repr__(self):
        return "<Key %s, redacted>" % self.kind


def key_from(key=None, passphrase=None, key_file=None):
    """Build the Key from exactly one source; key files must be root-only."""
    given = [n for n, v in (("key", key), ("passphrase", passphrase), ("key_file", key_file)) if v]
    if len(given) > 1:
        raise InvalidInput("give only one of key, passphrase and key_file (got %s)" % ", ".join(given))
    if key:
        return Key(key.encode("utf-8"), "key")
    if passphrase:
        return Key(passphrase.encode("utf-8"), "passphrase")
    if key_file:
        path = check_absolute_path(key_file, "key_file")
        try:
            info = os.stat(path)
        except OSError:
            raise InvalidInput("key_file %s does not exist" % path) from None
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
            raise InvalidInput("key_file %s must be a regular file owned by root with mode 0600 or stricter" % path)
        with open(path, "rb") as handle:
            material = handle.read()
        if not material:
            raise InvalidInput("key_file %s is empty" % path)
        return Key(material, "key")
    return None


class Observed:
    """What the host says about one repository (read-only).

    ``deep`` adds what only planning needs (loop devices, mapping and filesystem sizes: three
    commands); reports and facts need the shallow part, which runs no command at all.
    """

    def __init__(self, layout, runner, record, deep=True):
        self.record = record
        self.guid = record["guid"] if record else None
        self.subvolume = self.image = self.mount = None
        self.image_size = self.fs_size = self.mapper_size = None
        self.mapper = False
        self.loops = []
        if not record:
            return
        guid = self.guid
        self.subvolume = _btrfs.is_subvolume(layout.subvolume(guid))
        image = layout.image(guid)
        self.image = os.path.isfile(image)
        self.image_size = os.path.getsize(image) if self.image else None
        self.mapper = os.path.exists(layout.mapper_device(guid))
        self.mount = os.path.ismount(layout.mount(guid))
        if not deep:
            return
        self.loops = _losetup.devices_for(runner, image) if self.image else []
        if self.mapper:
            self.mapper_size = _lsblk.device_size(runner, layout.mapper_device(guid))
            self.fs_size = _e2fs.size(runner, layout.mapper_device(guid))

    def summary(self):
        if not self.record:
            return {"exists": False}
        return {"exists": self.record.get("status") == _state.READY, "status": self.record.get("status"),
                "size": self.image_size, "opened": self.mapper, "mounted": bool(self.mount)}


class Operation:
    """Shared machinery: a plan of actions applied in order, with a before/after report."""

    def __init__(self, layout, runner, host, check_mode):
        self.layout = layout
        self.runner = runner
        self.host = host
        self.check_mode = check_mode
        self.actions = []
        self.timings = {}

    def add(self, name, detail, apply):
        self.actions.append(Action(name, detail, apply))

    def apply(self):
        # Per-step wall time is reported, so a slow fork or open shows where its time went.
        apply_plan(self.actions, self.check_mode, self.timings)

    # Building blocks used by several plans. Each reads the record at apply time, since
    # a GUID allocated by an earlier action is only known then.

    def plan_open(self, record_of, observed, key):
        def guid():
            return record_of()["guid"]
        layout, runner = self.layout, self.runner
        if not observed.mapper:
            if key is None:
                raise InvalidInput("a key (key, passphrase or key_file) is needed to open %s" % record_of()["name"])
            if observed.image and observed.guid and (self.check_mode or self.actions):
                # Check mode must say when the key is wrong, and a wrong key must fail before any
                # earlier step of the plan changes something. Alone, the open itself tells.
                _cryptsetup.check_key(runner, layout.image(guid()), key.material)
            loops = list(observed.loops)

            def open_volume():
                device = loops[0]["name"] if loops else _losetup.attach(runner, layout.image(guid()))
                try:
                    _cryptsetup.luks_open(runner, device, layout.mapper(guid()), key.material)
                except LockboxError:
                    if not loops:
                        _losetup.detach(runner, device)  # leave nothing half-done
                    raise
                # An image grown while closed: let the filesystem fill it.
                mapper = layout.mapper_device(guid())
                if _e2fs.size(runner, mapper) < _lsblk.device_size(runner, mapper):
                    _e2fs.grow(runner, mapper)

            self.add("open", "attach a loop device and open the LUKS volume as %s"
                     % layout.mapper(observed.guid or "<guid>"), open_volume)
        if not observed.mount:
            def mount_volume():
                target = layout.mount(guid())
                os.makedirs(target, mode=0o755, exist_ok=True)
                _mount.mount(runner, layout.mapper_device(guid()), target, MOUNT_OPTIONS)
            self.add("mount", "mount it at %s" % (layout.mount(observed.guid or "<guid>")), mount_volume)

    def plan_close(self, observed):
        layout, runner, guid = self.layout, self.runner, observed.guid
        if observed.mount:
            # Recursive: a daemon that was force-stopped can leave its overlay mounts beneath.
            self.add("unmount", "unmount %s (and anything mounted beneath it)" % layout.mount(guid),
                     lambda: _mount.umount(runner, layout.mount(guid), recursive=True))
        if observed.mapper:
            self.add("close", "close %s" % layout.mapper(guid),
                     lambda: _cryptsetup.luks_close(runner, layout.mapper(guid)))
        for loop in observed.loops:
            self.add("detach", "detach %s" % loop["name"],
                     lambda name=loop["name"]: _losetup.detach(runner, name))

    def plan_discard(self, observed, remove_record=True):
        """Remove everything of a repository: used by delete and to redo an interrupted create/fork."""
        layout, runner, guid = self.layout, self.runner, observed.guid
        self.plan_close(observed)
        if observed.image and has_keyslots(runner, layout.image(guid)):
            self.add("erase-header", "wipe the LUKS keyslots of %s" % layout.image(guid),
                     lambda: _cryptsetup.erase(runner, layout.image(guid)))
        if observed.subvolume:
            self.add("delete-subvolume", "delete subvolume %s" % layout.subvolume(guid),
                     lambda: _btrfs.subvolume_delete(runner, layout.subvolume(guid)))
        if os.path.isdir(layout.mount(guid)):
            self.add("remove-mount-point", "remove %s" % layout.mount(guid), lambda: rmdir_if_empty(layout.mount(guid)))
        if remove_record:
            name = observed.record["name"]
            for kind, directory in (("transfer snapshots", layout.snapshots(guid)), ("backups", layout.backups(guid))):
                if os.path.isdir(directory):
                    self.add("delete-" + kind.split()[-1], "delete the %s of %s (%s)" % (kind, name, directory),
                             lambda d=directory: delete_snapshots(runner, d))
            store = _repo_secret.SecretStore(layout.state_dir, guid)
            if os.path.exists(store.path):
                self.add("forget-secrets", "remove the secrets of %s" % name, store.forget)
            network_id = observed.record.get("network_id")
            if network_id is not None and os.path.isdir(_secrets.directory(network_id)):
                self.add("remove-secret-files", "remove %s" % _secrets.directory(network_id),
                         lambda: _repo_secret.remove_files(network_id))
            self.add("remove-record", "forget %s" % name, lambda: self.host.remove(name))


def has_keyslots(runner, image):
    return _cryptsetup.is_luks(runner, image) and bool(_cryptsetup.dump(runner, image)["keyslots"])


def delete_snapshots(runner, directory):
    """Delete every subvolume in ``directory``, then the directory with what else is in it."""
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if _btrfs.is_subvolume(path):
            _btrfs.subvolume_delete(runner, path)
        elif os.path.isfile(path):
            os.unlink(path)
    os.rmdir(directory)


def rmdir_if_empty(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def new_record(host, name, size, key_kind, *, parent=None, tag=None, status=_state.CREATING):
    guid, network_id = host.new_identity()
    return {
        "name": name, "guid": guid, "network_id": network_id, "subnet": _state.subnet(network_id),
        "size": size, "key_kind": key_kind, "status": status, "created": _state.now(),
        "parent": parent["name"] if parent else None, "parent_guid": parent["guid"] if parent else None,
        "tag": tag, "is_fork": parent is not None,
    }


def written_size(size, value):
    """The size as the operator wrote it, with its meaning when that differs (bytes, rounding)."""
    shown = format_size(value)
    return str(size) if str(size) == shown else "%s (%s)" % (size, shown)


def parse_repo_size(size):
    value = round_up(parse_size(size, "size"), MIB)
    if value < MIN_REPO_SIZE:
        raise InvalidInput("size %s is below the minimum repository size of %s"
                           % (written_size(size, value), format_size(MIN_REPO_SIZE)))
    return value


def describe(runner, layout, record, host_records, seen=None):
    """The facts of one repository; ``seen`` reuses an observation already made of it."""
    if seen is None or seen.guid != record["guid"]:
        seen = Observed(layout, runner, record, deep=False)
    mount = layout.mount(record["guid"])
    used = None
    if seen.mount:
        info = os.statvfs(mount)
        used = (info.f_blocks - info.f_bfree) * info.f_frsize
    allocated = None
    if seen.image:
        allocated = os.stat(layout.image(record["guid"])).st_blocks * 512
    return {
        "name": record["name"], "guid": record["guid"], "network_id": record["network_id"],
        "subnet": record["subnet"], "size": seen.image_size or record.get("size"), "used": used,
        "allocated": allocated, "status": record.get("status"), "opened": seen.mapper, "mounted": bool(seen.mount),
        "mount_path": mount, "image": layout.image(record["guid"]), "mapper": layout.mapper(record["guid"]),
        "parent": record.get("parent"), "is_fork": bool(record.get("is_fork")), "tag": record.get("tag"),
        "children": sorted(r["name"] for r in host_records if r.get("parent_guid") == record["guid"]),
        "created": record.get("created"), "key_kind": record.get("key_kind"),
    }


def result_of(op, before, after, layout, host, record):  # noqa: PLR0917
    current = host.get(record["name"]) if (record is not None and not op.check_mode) else record
    return {
        "changed": bool(op.actions),
        "actions": [a.report() for a in op.actions],
        "diff": {"before": before.summary(), "after": after.summary()},
        # The after-observation is of this same record: describe it without observing again.
        "repository": describe(op.runner, layout, current, host.all(), seen=after) if current else None,
        "timings_ms": op.timings,
    }


def layout_of(params):
    """The Layout named by a module's datastore / mount_root / state_dir parameters."""
    return Layout(params.get("datastore") or DEFAULT_DATASTORE, params.get("mount_root"),
                  params.get("state_dir") or _state.DEFAULT_STATE_DIR)


def key_of(params):
    """The Key given by a module's key / passphrase / key_file parameters, or None."""
    return key_from(params.get("key"), params.get("passphrase"), params.get("key_file"))
