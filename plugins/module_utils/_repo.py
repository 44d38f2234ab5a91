# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repositories: LUKS2 images in BTRFS subvolumes of the datastore, forks, info, prune.

Each operation observes the host, plans a list of actions, applies them (unless in check
mode) and reports. A record in the host state directory is written before anything else
with a status saying what is under way, so an operation killed half way is either
finished (grow, open, close) or rolled back and redone (create, fork) by the next run,
and ``prune`` can clean up after anything else.
"""

from __future__ import annotations

import datetime
import os
import stat
import time

from ansible_collections.lockbox.fleet.plugins.module_utils import (
    _btrfs,
    _cryptsetup,
    _e2fs,
    _findmnt,
    _losetup,
    _lsblk,
    _state,
)
from ansible_collections.lockbox.fleet.plugins.module_utils._errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._paths import check_absolute_path
from ansible_collections.lockbox.fleet.plugins.module_utils._plan import Action
from ansible_collections.lockbox.fleet.plugins.module_utils._size import MIB, format_size, parse_size, round_up

DEFAULT_DATASTORE = "/mnt/rediacc"
MAPPER_PREFIX = "lockbox-"
IMAGE_NAME = "disk.img"
# LUKS2 header (16 MiB) plus a usable ext4.
MIN_REPO_SIZE = 64 * MIB
MOUNT_OPTIONS = "noatime"


# Fault injection for the kill tests: with LOCKBOX_FAULT_PAUSE=<action>, the operation
# stops after that action, writes its pid to FAULT_PAUSE_MARKER and waits to be killed.
FAULT_PAUSE_ENV = "LOCKBOX_FAULT_PAUSE"
FAULT_PAUSE_MARKER = "/run/lockbox-fault-paused"


def _fault_pause(action):
    import time
    with open(FAULT_PAUSE_MARKER, "w") as handle:
        handle.write("%d %s\n" % (os.getpid(), action))
    time.sleep(600)
    raise LockboxError("fault pause after %s was not ended by a kill" % action)


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
    """What the host says about one repository (read-only)."""

    def __init__(self, layout, runner, record):
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
        self.loops = _losetup.devices_for(runner, image) if self.image else []
        self.mapper = os.path.exists(layout.mapper_device(guid))
        self.mount = _findmnt.mount_at(runner, layout.mount(guid))
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
        if self.check_mode:
            return
        pause_after = os.environ.get(FAULT_PAUSE_ENV)
        for action in self.actions:
            started = time.monotonic()
            action.apply()
            # Per-step wall time, reported so a slow fork or open shows where its time went.
            self.timings.setdefault(action.name, round((time.monotonic() - started) * 1000, 1))
            if action.name == pause_after:
                _fault_pause(action.name)

    # Building blocks used by several plans. Each reads the record at apply time, since
    # a GUID allocated by an earlier action is only known then.

    def plan_open(self, record_of, observed, key):
        def guid():
            return record_of()["guid"]
        layout, runner = self.layout, self.runner
        if not observed.mapper:
            if key is None:
                raise InvalidInput("a key (key, passphrase or key_file) is needed to open %s" % record_of()["name"])
            if observed.image and observed.guid:
                # Test the key first, so a wrong key fails before anything is attached.
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
                runner.run(["mount", "-o", MOUNT_OPTIONS, layout.mapper_device(guid()), target])
            self.add("mount", "mount it at %s" % (layout.mount(observed.guid or "<guid>")), mount_volume)

    def plan_close(self, observed):
        layout, runner, guid = self.layout, self.runner, observed.guid
        if observed.mount:
            # Recursive: a daemon that was force-stopped can leave its overlay mounts beneath.
            self.add("unmount", "unmount %s (and anything mounted beneath it)" % layout.mount(guid),
                     lambda: runner.run(["umount", "--recursive", layout.mount(guid)]))
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
        if observed.image and _has_keyslots(runner, layout.image(guid)):
            self.add("erase-header", "wipe the LUKS keyslots of %s" % layout.image(guid),
                     lambda: _cryptsetup.erase(runner, layout.image(guid)))
        if observed.subvolume:
            self.add("delete-subvolume", "delete subvolume %s" % layout.subvolume(guid),
                     lambda: _btrfs.subvolume_delete(runner, layout.subvolume(guid)))
        if os.path.isdir(layout.mount(guid)):
            self.add("remove-mount-point", "remove %s" % layout.mount(guid), lambda: _rmdir(layout.mount(guid)))
        if remove_record:
            name = observed.record["name"]
            self.add("remove-record", "forget %s" % name, lambda: self.host.remove(name))


def _has_keyslots(runner, image):
    return _cryptsetup.is_luks(runner, image) and bool(_cryptsetup.dump(runner, image)["keyslots"])


def _rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _new_record(host, name, size, key_kind, *, parent=None, tag=None, status=_state.CREATING):
    guid, network_id = host.new_identity()
    return {
        "name": name, "guid": guid, "network_id": network_id, "subnet": _state.subnet(network_id),
        "size": size, "key_kind": key_kind, "status": status, "created": _now(),
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


# ---------------------------------------------------------------------------------------
# luks_repo


def converge_repo(layout, runner, name, *, state, size=None, key=None, force=False, orphan_forks=False,
                  check_mode=False):
    """present / opened / closed / absent for repository ``name``."""
    _state.check_name(name)
    if state not in ("present", "opened", "closed", "absent"):
        raise InvalidInput("state must be present, opened, closed or absent, got %r" % (state,))
    wanted_size = parse_repo_size(size) if size not in (None, "") else None
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        record = host.get(name)
        before = Observed(layout, runner, record)
        op = Operation(layout, runner, host, check_mode)
        if state == "absent":
            _plan_delete(op, before, force, orphan_forks)
        elif record is None and ":" in name:
            raise InvalidInput("%r is a fork name (<parent>:<tag>); forks are made with lockbox.fleet.btrfs_fork"
                               % name)
        elif record is None and wanted_size is None and state in ("opened", "closed"):
            raise InvalidInput("unknown repository %r: there is nothing to %s (give size and a key to create it)"
                               % (name, "open" if state == "opened" else "close"))
        elif record is None or record["status"] == _state.CREATING:
            _plan_create(op, before, name, state=state, size=wanted_size, key=key, written=size)
        elif record["status"] != _state.READY:
            raise LockboxError("%s is in state %r from an interrupted operation: run repo_prune (or delete it "
                               "with state=absent force=true)" % (name, record["status"]))
        else:
            _plan_existing(op, before, state, wanted_size, key)
        op.apply()
        record = host.get(name) if not check_mode else record
        after = Observed(layout, runner, record) if not check_mode else before
        return _result(op, before, after, layout, host, record)


def _plan_create(op, observed, name, *, state, size, key, written=None):
    layout, runner, host = op.layout, op.runner, op.host
    if size is None:
        raise InvalidInput("size is required to create repository %s" % name)
    if key is None:
        raise InvalidInput("a key (key, passphrase or key_file) is required to create repository %s" % name)
    if observed.record:
        # An earlier create was interrupted: roll back what it left, keep its identity.
        op.plan_discard(observed, remove_record=False)
    _check_room(layout, size, written)
    ctx = {"record": observed.record}

    def write_record():
        if ctx["record"] is None:
            ctx["record"] = _new_record(host, name, size, key.kind)
        ctx["record"].update(size=size, key_kind=key.kind, status=_state.CREATING)
        host.put(ctx["record"])

    def guid():
        return ctx["record"]["guid"]

    op.add("record", "allocate a GUID and networkId for %s" % name if not observed.record
           else "resume the interrupted create of %s" % name, write_record)

    def create_subvolume():
        os.makedirs(layout.repositories, mode=0o700, exist_ok=True)
        _btrfs.subvolume_create(runner, layout.subvolume(guid()))
    op.add("create-subvolume", "create subvolume %s/<guid>" % layout.repositories, create_subvolume)
    op.add("create-image", "create a sparse %s image" % format_size(size),
           lambda: _sparse_file(layout.image(guid()), size))
    kdf = "PBKDF2 for a random key" if key.kind == "key" else "argon2id for a passphrase"
    op.add("format", "luksFormat (LUKS2, %s) and ext4 inside" % kdf,
           lambda: _format_volume(layout, runner, guid(), key))
    op.add("ready", "mark %s ready" % name,
           lambda: (ctx["record"].update(status=_state.READY), host.put(ctx["record"])))
    if state == "opened":
        fresh = Observed(layout, runner, None)
        op.plan_open(lambda: ctx["record"], fresh, key)


def _format_volume(layout, runner, guid, key):
    image = layout.image(guid)
    _cryptsetup.luks_format(runner, image, key.material, key.kind)
    device = _losetup.attach(runner, image)
    try:
        _cryptsetup.luks_open(runner, device, layout.mapper(guid), key.material)
        try:
            _e2fs.mkfs(runner, layout.mapper_device(guid))
        finally:
            _cryptsetup.luks_close(runner, layout.mapper(guid))
    finally:
        _losetup.detach(runner, device)


def _plan_existing(op, observed, state, size, key):
    layout, runner, host, record = op.layout, op.runner, op.host, observed.record
    guid = record["guid"]
    if not observed.subvolume or not observed.image:
        raise LockboxError("the image of %s is missing (%s): run repo_prune to clean up its record"
                           % (record["name"], layout.image(guid)))
    if size is not None and size < observed.image_size:
        raise InvalidInput("shrinking is refused: %s is %s, asked for %s"
                           % (record["name"], format_size(observed.image_size), format_size(size)))
    grow = size is not None and size > observed.image_size
    if grow:
        _check_room(layout, size - observed.image_size)

        def grow_image():
            _sparse_file(layout.image(guid), size)
            record["size"] = size
            host.put(record)
        op.add("grow-image", "grow the image from %s to %s" % (format_size(observed.image_size), format_size(size)),
               grow_image)
    if state == "closed":
        op.plan_close(observed)
        return
    if state == "opened":
        op.plan_open(lambda: record, observed, key)
    if observed.mapper and (grow or (observed.mapper_size or 0) < observed.image_size - 32 * MIB):
        loop = observed.loops[0]["name"] if observed.loops else None

        def grow_volume():
            if loop:
                _losetup.refresh_capacity(runner, loop)
            _cryptsetup.resize(runner, layout.mapper(guid), key.material if key else b"")
        op.add("grow-volume", "grow the loop device and the LUKS mapping", grow_volume)
    fs_behind = observed.fs_size is not None and observed.fs_size < (observed.mapper_size or 0)
    if observed.mapper and (grow or fs_behind):
        op.add("grow-filesystem", "resize2fs %s online" % layout.mapper_device(guid),
               lambda: _e2fs.grow(runner, layout.mapper_device(guid)))


def _plan_delete(op, observed, force, orphan_forks):
    record = observed.record
    if record is None:
        return
    children = op.host.children(record["guid"])
    if not force:
        raise InvalidInput("state=absent destroys %s and its data; set force=true to do that" % record["name"])
    if children and not orphan_forks:
        raise InvalidInput("%s still has forks (%s); delete them first or set orphan_forks=true to keep them "
                           "as independent repositories" % (record["name"], ", ".join(children)))
    host = op.host

    def mark_deleting():
        record["status"] = _state.DELETING
        host.put(record)
    if record["status"] != _state.DELETING:
        op.add("mark-deleting", "mark %s as being deleted" % record["name"], mark_deleting)
    for child in children:
        def orphan(child=child):
            child_record = host.get(child)
            child_record.update(parent=None, parent_guid=None, orphaned_from=record["name"])
            host.put(child_record)
        op.add("orphan-fork", "keep fork %s as an independent repository" % child, orphan)
    # Its daemon and network rules go first: nothing may run on a volume being removed.
    from ansible_collections.lockbox.fleet.plugins.module_utils import _dockerd, _loopback
    for name, detail, apply in _dockerd.removal_steps(op.runner, record["network_id"]) + \
            _loopback.removal_steps(op.runner, record["network_id"]):
        op.add(name, detail, apply)
    op.plan_discard(observed)


def _sparse_file(path, size):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_room(layout, needed, written=None):
    """Sparse images are only written as used, but never let one be larger than the datastore."""
    info = os.statvfs(layout.datastore)
    total = info.f_blocks * info.f_frsize
    if needed > total:
        raise InvalidInput("size %s is larger than the datastore %s (%s)"
                           % (written_size(written, needed) if written is not None else format_size(needed),
                              layout.datastore, format_size(total)))


# ---------------------------------------------------------------------------------------
# btrfs_fork


def fork_repo(layout, runner, parent_name, tag, *, opened=True, key=None, force=False, check_mode=False):
    _state.check_name(parent_name, "parent")
    name = _state.fork_name(parent_name, tag)
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        parent = host.get(parent_name)
        if parent is None:
            raise InvalidInput("unknown repository %r: nothing to fork" % parent_name)
        if parent["status"] != _state.READY:
            raise LockboxError("%s is in state %r; it cannot be forked" % (parent_name, parent["status"]))
        existing = host.get(name)
        before = Observed(layout, runner, existing)
        parent_seen = Observed(layout, runner, parent)
        if not parent_seen.subvolume:
            raise LockboxError("the subvolume of %s is missing (%s)" % (parent_name, layout.subvolume(parent["guid"])))
        op = Operation(layout, runner, host, check_mode)
        if existing and existing["status"] == _state.READY and existing.get("parent_guid") == parent["guid"] \
                and not force:
            # The fork exists: converge its open/closed state only.
            if opened:
                op.plan_open(lambda: existing, before, key)
        else:
            if existing and existing["status"] == _state.READY and not force:
                raise InvalidInput("%s already exists and is not a fork of the current %s; set force=true to "
                                   "replace it with a new fork" % (name, parent_name))
            if opened and key is None:
                raise InvalidInput("a key (key, passphrase or key_file) is needed to open the fork %s" % name)
            if key is not None:
                _cryptsetup.check_key(runner, layout.image(parent["guid"]), key.material)
            _plan_fork(op, before, parent, parent_seen, name=name, tag=tag, opened=opened, key=key)
        op.apply()
        record = host.get(name) if not check_mode else existing
        after = Observed(layout, runner, record) if not check_mode else before
        return _result(op, before, after, layout, host, record)


def _plan_fork(op, existing, parent, parent_seen, *, name, tag, opened, key):
    layout, runner, host = op.layout, op.runner, op.host
    if existing.record:
        # A fork of that name to replace, or an interrupted fork to redo.
        op.plan_discard(existing, remove_record=True)
    ctx = {}

    def write_record():
        ctx["record"] = _new_record(host, name, parent["size"], parent["key_kind"], parent=parent, tag=tag,
                                    status=_state.FORKING)
        host.put(ctx["record"])

    def guid():
        return ctx["record"]["guid"]

    op.add("record", "allocate a GUID and networkId for %s" % name, write_record)
    freeze = layout.mount(parent["guid"]) if parent_seen.mount else None

    def clone():
        started = time.monotonic()
        errors = os.path.join(layout.state_dir, ".snapshot-errors")
        try:
            pause = FAULT_PAUSE_MARKER if os.environ.get(FAULT_PAUSE_ENV) == "frozen" else ""
            _btrfs.snapshot(runner, layout.subvolume(parent["guid"]), layout.subvolume(guid()), freeze=freeze,
                            errors=errors, pause_marker=pause)
        except LockboxError as exc:
            detail = _read(errors)
            raise LockboxError("snapshot of %s failed: %s" % (parent["name"], detail or exc.msg),
                               cmd=exc.cmd, rc=exc.rc, stderr=detail) from None
        op.timings["clone"] = round((time.monotonic() - started) * 1000, 1)
    op.add("clone", "snapshot subvolume %s%s" % (layout.subvolume(parent["guid"]),
                                                 " (filesystem frozen for the instant)" if freeze else ""), clone)
    op.add("new-luks-uuid", "give the fork its own LUKS UUID",
           lambda: _cryptsetup.set_uuid(runner, layout.image(guid()), ctx["record"]["guid"]))
    op.add("ready", "mark %s ready" % name,
           lambda: (ctx["record"].update(status=_state.READY), host.put(ctx["record"])))
    if opened:
        fresh = Observed(layout, runner, None)
        op.plan_open(lambda: ctx["record"], fresh, key)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# info and prune


def describe(layout, runner, record, host_records, seen=None):
    """The facts of one repository; ``seen`` reuses an observation already made of it."""
    if seen is None or seen.guid != record["guid"]:
        seen = Observed(layout, runner, record)
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


def info(layout, runner, name=None):
    host = _state.HostState(layout.state_dir)
    records = host.all()
    if name is not None:
        _state.check_name(name)
        if not any(r["name"] == name for r in records):
            raise InvalidInput("unknown repository %r" % name)
    return [describe(layout, runner, r, records) for r in records if name is None or r["name"] == name]


def prune(layout, runner, check_mode=False):
    """Remove what interrupted operations left: unfinished records, and subvolumes,
    mappings and loop devices that no record owns."""
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        op = Operation(layout, runner, host, check_mode)
        records = host.all()
        known = {r["guid"] for r in records}
        for record in records:
            if record.get("status") == _state.READY:
                continue
            if record.get("status") == _state.FORKING and record.get("parent_guid"):
                parent_mount = layout.mount(record["parent_guid"])
                if os.path.ismount(parent_mount):
                    op.add("thaw", "make sure %s is not left frozen" % parent_mount,
                           lambda m=parent_mount: _btrfs.thaw(runner, m))
            op.plan_discard(Observed(layout, runner, record))
        if os.path.isdir(layout.repositories):
            for entry in sorted(os.listdir(layout.repositories)):
                if entry in known:
                    continue
                stray = Observed(layout, runner, {"guid": entry, "name": entry})
                stray.record = None  # nothing to forget
                op.plan_close(stray)
                if stray.subvolume:
                    op.add("delete-subvolume", "delete stray subvolume %s" % layout.subvolume(entry),
                           lambda e=entry: _btrfs.subvolume_delete(runner, layout.subvolume(e)))
        for mapper in sorted(os.listdir("/dev/mapper")) if os.path.isdir("/dev/mapper") else []:
            if mapper.startswith(MAPPER_PREFIX) and mapper[len(MAPPER_PREFIX):] not in known:
                guid = mapper[len(MAPPER_PREFIX):]
                if os.path.isdir(layout.subvolume(guid)):
                    continue  # handled with its subvolume above
                stray_mount = layout.mount(guid)
                if os.path.ismount(stray_mount):
                    op.add("unmount", "unmount stray %s" % stray_mount,
                           lambda m=stray_mount: runner.run(["umount", m]))
                op.add("close", "close stray mapping %s" % mapper,
                       lambda m=mapper: _cryptsetup.luks_close(runner, m))
        op.apply()
        return {"changed": bool(op.actions), "actions": [a.report() for a in op.actions]}


def _result(op, before, after, layout, host, record):  # noqa: PLR0917
    current = host.get(record["name"]) if (record is not None and not op.check_mode) else record
    return {
        "changed": bool(op.actions),
        "actions": [a.report() for a in op.actions],
        "diff": {"before": before.summary(), "after": after.summary()},
        # The after-observation is of this same record: describe it without observing again.
        "repository": describe(layout, op.runner, current, host.all(), seen=after) if current else None,
        "timings_ms": op.timings,
    }
