# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_prune: clean up after interrupted operations."""

from __future__ import annotations

import os

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import mount as _mount


def prune(runner, layout, check_mode=False):
    """Remove what interrupted operations left: unfinished records, and subvolumes,
    mappings and loop devices that no record owns."""
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        op = _repository.Operation(layout, runner, host, check_mode)
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
            op.plan_discard(_repository.Observed(layout, runner, record))
        if os.path.isdir(layout.repositories):
            for entry in sorted(os.listdir(layout.repositories)):
                if entry in known:
                    continue
                stray = _repository.Observed(layout, runner, {"guid": entry, "name": entry})
                stray.record = None  # nothing to forget
                op.plan_close(stray)
                if stray.subvolume:
                    op.add("delete-subvolume", "delete stray subvolume %s" % layout.subvolume(entry),
                           lambda e=entry: _btrfs.subvolume_delete(runner, layout.subvolume(e)))
        _plan_stray_snapshots(op, known)
        for mapper in sorted(os.listdir("/dev/mapper")) if os.path.isdir("/dev/mapper") else []:
            if mapper.startswith(_repository.MAPPER_PREFIX) and mapper[len(_repository.MAPPER_PREFIX):] not in known:
                guid = mapper[len(_repository.MAPPER_PREFIX):]
                if os.path.isdir(layout.subvolume(guid)):
                    continue  # handled with its subvolume above
                stray_mount = layout.mount(guid)
                if os.path.ismount(stray_mount):
                    op.add("unmount", "unmount stray %s" % stray_mount,
                           lambda m=stray_mount: _mount.umount(runner, m))
                op.add("close", "close stray mapping %s" % mapper,
                       lambda m=mapper: _cryptsetup.luks_close(runner, m))
        op.apply()
        return {"changed": bool(op.actions), "actions": [a.report() for a in op.actions]}


def _plan_stray_snapshots(op, known):
    """Transfer snapshots and backups of repositories no record knows (deleted, or a copy that never finished)."""
    layout = op.layout
    for kind, path_of in (("transfer snapshots", layout.snapshots), ("backups", layout.backups)):
        parent = os.path.dirname(path_of("x"))
        for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
            if entry not in known:
                path = path_of(entry)
                op.add("delete-" + kind.split()[-1], "delete the stray %s %s" % (kind, path),
                       lambda p=path: _repository.delete_snapshots(op.runner, p))


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_prune."""
    return prune(runner, _repository.layout_of(params), check_mode=check_mode)
