# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_prune: clean up after interrupted operations."""

from __future__ import annotations

import json
import os
import re
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import mount as _mount
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

# Snapshot directories of a GUID no record knows are removed only once nothing was written in
# them for this long: a copy being received has its snapshot there before its record exists.
SNAPSHOT_GRACE = 3600
# What names a repository's networkId on the host outside its record.
_DAEMON_UNIT = re.compile(r"rediacc-docker-([0-9]{1,5})\.service")
_DAEMON_CONFIG = re.compile(r"([0-9]{1,5})\.json")
_REPOSITORY_SLICE = re.compile(r"rediacc-([0-9]{1,5})\.slice")
DATA_ROOT_TAIL = _repo_daemon.data_root("")  # a daemon configuration names its mount by this


def prune(runner, layout, check_mode=False, snapshot_grace=SNAPSHOT_GRACE, now=None):
    """Remove what interrupted operations left: unfinished records; subvolumes, mappings and loop
    devices that no record owns; daemons and slices of networkIds no repository holds; snapshot
    directories of unknown repositories older than ``snapshot_grace`` seconds."""
    if isinstance(snapshot_grace, bool) or not isinstance(snapshot_grace, int) or snapshot_grace < 0:
        raise InvalidInput("snapshot_grace %r: whole seconds, 0 or more" % (snapshot_grace,))
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
        _plan_stray_snapshots(op, known, snapshot_grace, time.time() if now is None else now)
        _plan_stray_mappings(op, known)
        for network_id in stray_network_ids(layout, records):
            for name, detail, apply in _repo_daemon.removal_steps(runner, network_id) + \
                    _loopback_net.removal_steps(runner, network_id):
                op.add(name, "%s (networkId %d: no repository holds it)" % (detail, network_id), apply)
        op.apply()
        return {"changed": bool(op.actions), "actions": [a.report() for a in op.actions]}


def _plan_stray_mappings(op, known):
    """Mappings of ours (and their mounts) whose repository no record knows and whose subvolume is gone."""
    layout, runner = op.layout, op.runner
    for mapper in sorted(os.listdir("/dev/mapper")) if os.path.isdir("/dev/mapper") else []:
        if mapper.startswith(_repository.MAPPER_PREFIX) and mapper[len(_repository.MAPPER_PREFIX):] not in known:
            guid = mapper[len(_repository.MAPPER_PREFIX):]
            if os.path.isdir(layout.subvolume(guid)):
                continue  # handled with its subvolume
            stray_mount = layout.mount(guid)
            if os.path.ismount(stray_mount):
                op.add("unmount", "unmount stray %s" % stray_mount, lambda m=stray_mount: _mount.umount(runner, m))
            op.add("close", "close stray mapping %s" % mapper, lambda m=mapper: _cryptsetup.luks_close(runner, m))


def _newest_change(path):
    """The newest modification time of ``path``, its snapshots and their files (a receive writes the
    image inside the snapshot it creates)."""
    newest = os.lstat(path).st_mtime
    for entry in os.listdir(path):
        below = os.path.join(path, entry)
        newest = max(newest, os.lstat(below).st_mtime)
        if os.path.isdir(below) and not os.path.islink(below):
            newest = max([newest] + [os.lstat(os.path.join(below, name)).st_mtime for name in os.listdir(below)])
    return newest


def _plan_stray_snapshots(op, known, grace, now):
    """Transfer snapshots and backups of repositories no record knows (deleted, or a copy that never
    finished), once untouched for ``grace`` seconds."""
    layout = op.layout
    for kind, path_of in (("transfer snapshots", layout.snapshots), ("backups", layout.backups)):
        parent = os.path.dirname(path_of("x"))
        for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
            if entry in known:
                continue
            path = path_of(entry)
            if now - _newest_change(path) < grace:
                continue  # perhaps a copy being received: its record comes at its commit
            op.add("delete-" + kind.split()[-1], "delete the stray %s %s" % (kind, path),
                   lambda p=path: _repository.delete_snapshots(op.runner, p))


def _daemon_mount(network_id, unit_dir, config_dir):
    """The mount a repository daemon's configuration (or, without one, its unit) serves, or None."""
    try:
        with open(os.path.join(config_dir, "%d.json" % network_id)) as handle:
            root = json.load(handle).get("data-root") or ""
        if root.endswith(DATA_ROOT_TAIL):
            return root[:-len(DATA_ROOT_TAIL)]
    except (OSError, ValueError, AttributeError):
        pass
    for line in (read_text(os.path.join(unit_dir, _repo_daemon.unit_name(network_id))) or "").splitlines():
        if line.startswith("RequiresMountsFor="):
            return line.split("=", 1)[1].strip()
    return None


def stray_network_ids(layout, records, unit_dir=None, config_dir=None, slices_dir=None):
    """networkIds in the repositories' range that a daemon unit, a daemon configuration or a slice
    still names but no record holds (what a deleted or interrupted repository left).

    A daemon counts only when it serves a mount of this layout whose GUID no record knows, so a
    prune never stops what serves another datastore's repository or a Hub user (whose daemons
    also have networkIds above the repositories' range); a slice with no daemon left counts.
    """
    unit_dir, config_dir = unit_dir or _systemd.UNIT_DIR, config_dir or _repo_daemon.CONFIG_DIR
    slices_dir = slices_dir or os.path.dirname(_loopback_net.slice_cgroup(_loopback_net.repository_slice(0)))
    held = {r.get("network_id") for r in records}
    guids = {r.get("guid") for r in records}
    found = set()
    for directory, pattern in ((unit_dir, _DAEMON_UNIT), (config_dir, _DAEMON_CONFIG), (slices_dir, _REPOSITORY_SLICE)):
        for entry in os.listdir(directory) if os.path.isdir(directory) else []:
            matched = pattern.fullmatch(entry)
            if matched and _state.NETWORK_ID_FIRST <= int(matched.group(1)) < _state.NETWORK_ID_LIMIT:
                found.add(int(matched.group(1)))
    stray = []
    for network_id in sorted(found - held):
        mount = _daemon_mount(network_id, unit_dir, config_dir)
        if mount is not None and (os.path.dirname(mount) != layout.mount_root or os.path.basename(mount) in guids):
            continue
        stray.append(network_id)
    return stray


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_prune."""
    return prune(runner, _repository.layout_of(params), check_mode=check_mode,
                 snapshot_grace=params.get("snapshot_grace", SNAPSHOT_GRACE))
