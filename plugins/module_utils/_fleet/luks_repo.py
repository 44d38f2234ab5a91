# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.luks_repo: a repository's LUKS2 image present, opened, closed or absent; online grow."""

from __future__ import annotations

import os

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.size import MIB, format_size
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import e2fs as _e2fs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import losetup as _losetup


def converge_repo(runner, layout, name, *, state, size=None, key=None, force=False, orphan_forks=False,
                  check_mode=False):
    """present / opened / closed / absent for repository ``name``."""
    _state.check_name(name)
    if state not in ("present", "opened", "closed", "absent"):
        raise InvalidInput("state must be present, opened, closed or absent, got %r" % (state,))
    wanted_size = _repository.parse_repo_size(size) if size not in (None, "") else None
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        record = host.get(name)
        before = _repository.Observed(layout, runner, record)
        op = _repository.Operation(layout, runner, host, check_mode)
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
        after = _repository.Observed(layout, runner, record, deep=False) if not check_mode else before
        return _repository.result_of(op, before, after, layout, host, record)


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
            ctx["record"] = _repository.new_record(host, name, size, key.kind)
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
        fresh = _repository.Observed(layout, runner, None)
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
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
    for name, detail, apply in _repo_daemon.removal_steps(op.runner, record["network_id"]) + \
            _loopback_net.removal_steps(op.runner, record["network_id"]):
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
                           % (_repository.written_size(written, needed) if written is not None else format_size(needed),
                              layout.datastore, format_size(total)))


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.luks_repo (every _fleet module file has this signature)."""
    return converge_repo(runner, _repository.layout_of(params), params["name"], state=params["state"],
                         size=params.get("size"), key=_repository.key_of(params), force=params.get("force", False),
                         orphan_forks=params.get("orphan_forks", False), check_mode=check_mode)
