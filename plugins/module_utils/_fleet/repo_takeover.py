# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_takeover: a fork's data becomes its grand's; the grand keeps its identity.

The grand (the fork's parent) must be closed: ``repo_takeover.yml`` brings it down, runs this,
and brings it up again. Its subvolume is renamed to a new backup fork
``<grand>:takeover-<UTC stamp>`` (constant time; the backup gets its own GUID, networkId and LUKS
UUID, no secrets: a fork never inherits them), and a snapshot of the fork's subvolume (frozen for
the instant if the fork is mounted) takes the grand's place with the grand's LUKS UUID. The grand's
record, GUID, networkId, secrets, routes and children stay. Revert: take over from the backup fork.
A failure after the rename puts the grand's own data back before it is reported.
"""

from __future__ import annotations

import datetime
import os

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup

BACKUP_TAG = "takeover-%Y%m%dT%H%M%SZ"


def takeover(runner, layout, name, *, check_mode=False, now=None):
    fork = _state.ready_record(layout.state_dir, name)
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        fork = host.get(name)
        grand = next((r for r in host.all() if r["guid"] == fork.get("parent_guid")), None) \
            if fork.get("is_fork") else None
        if grand is None:
            raise InvalidInput("%s is not a fork of a repository on this host: only a fork's data can take over "
                               "its parent's" % name)
        if grand.get("status") != _state.READY:
            raise LockboxError("%s is in state %r: run repo_prune first" % (grand["name"], grand["status"]))
        grand_seen = _repository.Observed(layout, runner, grand, deep=False)
        if grand_seen.mapper or grand_seen.mount:
            raise InvalidInput("%s is open: bring it down and close it first (repo_takeover.yml does, and brings it "
                               "up again)" % grand["name"])
        fork_seen = _repository.Observed(layout, runner, fork, deep=False)
        if not fork_seen.subvolume or not grand_seen.subvolume:
            raise LockboxError("the subvolume of %s is missing" % (name if not fork_seen.subvolume else grand["name"]))
        if _already_taken(runner, layout, grand, fork):
            return {"changed": False, "actions": [], "timings_ms": {}, "grand": grand["name"],
                    "backup": grand.get("taken_over_backup"), "backup_guid": None}
        tag = (now or datetime.datetime.now(datetime.timezone.utc)).strftime(BACKUP_TAG)
        backup_name = _state.fork_name(grand["name"], tag)
        if host.get(backup_name) is not None:
            raise InvalidInput("%s exists already: wait a second and run again" % backup_name)
        op = _repository.Operation(layout, runner, host, check_mode)
        ctx = {}
        _plan(op, ctx, grand, fork, fork_seen, backup_name, tag)
        try:
            op.apply()
        except LockboxError as exc:
            if ctx.get("moved"):
                _put_back(runner, layout, host, grand, ctx)
                exc.msg += " (rolled back: %s has its own data again)" % grand["name"]
                exc.args = (exc.msg,)
            raise
        backup = host.get(backup_name) if not check_mode else None
        return {"changed": True, "actions": [a.report() for a in op.actions], "timings_ms": op.timings,
                "grand": grand["name"], "backup": backup_name, "backup_guid": backup["guid"] if backup else None}


def _already_taken(runner, layout, grand, fork):
    """The grand holds the fork's data as taken over, and neither was written since."""
    if grand.get("taken_over_from") != fork["name"]:
        return False
    here = _btrfs.subvolume_show(runner, layout.subvolume(grand["guid"]))
    there = _btrfs.subvolume_show(runner, layout.subvolume(fork["guid"]))
    finished_at = grand.get("taken_over_generation")
    return (here["parent_uuid"] == there["uuid"] and here["created_generation"] is not None
            and isinstance(finished_at, int)
            and not _btrfs.written_since(runner, layout.subvolume(fork["guid"]), here["created_generation"])
            and not _btrfs.written_since(runner, layout.subvolume(grand["guid"]), finished_at))


def _plan(op, ctx, grand, fork, fork_seen, backup_name, tag):  # noqa: PLR0917
    layout, runner, host = op.layout, op.runner, op.host
    guid = grand["guid"]

    def record_backup():
        ctx["backup"] = _repository.new_record(host, backup_name, grand["size"], grand["key_kind"], parent=grand,
                                               tag=tag, status=_state.FORKING)
        host.put(ctx["backup"])

    def keep_old_data():
        os.rename(layout.subvolume(guid), layout.subvolume(ctx["backup"]["guid"]))
        ctx["moved"] = True

    def take_data():
        freeze = layout.mount(fork["guid"]) if fork_seen.mount else None
        _btrfs.snapshot(runner, layout.subvolume(fork["guid"]), layout.subvolume(guid), freeze=freeze)
        ctx["taken"] = True

    def finish():
        ctx["backup"]["status"] = _state.READY
        host.put(ctx["backup"])
        os.sync()  # the generation recorded is that of the committed LUKS UUID change
        grand.update(taken_over_from=fork["name"], taken_over=_state.now(), taken_over_backup=backup_name,
                     taken_over_generation=_btrfs.subvolume_show(runner, layout.subvolume(guid))["generation"])
        host.put(grand)

    op.add("record", "allocate a GUID and networkId for %s, the grand's current data" % backup_name, record_backup)
    op.add("keep-old-data", "rename %s's subvolume to the backup's" % grand["name"], keep_old_data)
    op.add("backup-luks-uuid", "give %s its own LUKS UUID" % backup_name,
           lambda: _cryptsetup.set_uuid(runner, layout.image(ctx["backup"]["guid"]), ctx["backup"]["guid"]))
    op.add("take-data", "snapshot %s's subvolume as %s's%s" % (fork["name"], grand["name"], " (frozen for the instant)"
                                                               if fork_seen.mount else ""), take_data)
    op.add("grand-luks-uuid", "give it %s's LUKS UUID" % grand["name"],
           lambda: _cryptsetup.set_uuid(runner, layout.image(guid), guid))
    op.add("ready", "mark %s ready and record the takeover in %s" % (backup_name, grand["name"]), finish)


def _put_back(runner, layout, host, grand, ctx):
    """After a failed step: the grand's own subvolume back in its place, its LUKS UUID, no backup record."""
    guid, backup = grand["guid"], ctx["backup"]["guid"]
    if ctx.get("taken") and _btrfs.is_subvolume(layout.subvolume(guid)):
        _btrfs.subvolume_delete(runner, layout.subvolume(guid))
    os.rename(layout.subvolume(backup), layout.subvolume(guid))
    _cryptsetup.set_uuid(runner, layout.image(guid), guid)
    host.remove(ctx["backup"]["name"])


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_takeover."""
    return takeover(runner, _repository.layout_of(params), params["name"], check_mode=check_mode)
