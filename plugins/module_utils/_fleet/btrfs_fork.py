# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.btrfs_fork: a constant-time fork by subvolume snapshot (parent frozen for that instant).

With ``checkpoint``, the parent's labelled services are checkpointed while they keep running,
just before the snapshot, so the fork holds their process state (the parent's copy is removed
after the snapshot). The fork's record names that checkpoint for its first ``repo up`` and
carries the parent's networkIds as address aliases (see loopback_net), so the restored
processes listen on and reach the fork's own addresses.
"""

from __future__ import annotations

import os
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core import faults
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _checkpoint
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import checkpoint as _checkpoint_rules
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup


def fork_repo(runner, layout, parent_name, tag, *, opened=True, key=None, force=False, checkpoint=False,
              check_mode=False):
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
        before = _repository.Observed(layout, runner, existing)
        parent_seen = _repository.Observed(layout, runner, parent, deep=False)
        if not parent_seen.subvolume:
            raise LockboxError("the subvolume of %s is missing (%s)" % (parent_name, layout.subvolume(parent["guid"])))
        op = _repository.Operation(layout, runner, host, check_mode)
        warnings = []
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
            secrets = _repo_secret.SecretStore(layout.state_dir, parent["guid"]).entries() if checkpoint else {}
            if secrets:
                # A fork never inherits secrets; its parent's memory holds them once they are in use.
                raise InvalidInput("%s has secrets (%s): a fork with checkpoint would carry its processes' memory, "
                                   "and the secrets in it, into the fork. Fork without checkpoint: the fork's "
                                   "services start fresh, with no secrets" % (parent_name, ", ".join(secrets)))
            if key is not None:
                _cryptsetup.check_key(runner, layout.image(parent["guid"]), key.material)
            warnings = _plan_fork(op, before, parent, parent_seen, name=name, tag=tag, opened=opened, key=key,
                                  checkpoint=checkpoint)
        op.apply()
        record = host.get(name) if not check_mode else existing
        after = _repository.Observed(layout, runner, record, deep=False) if not check_mode else before
        result = _repository.result_of(op, before, after, layout, host, record)
        if warnings:
            result["warnings"] = warnings
        return result


def _labelled_running(runner, layout, parent, parent_seen):
    """(the parent as renet sees it, its running labelled containers); none when it is not up."""
    repo = _project.Repository.from_record(layout, parent)
    if not parent_seen.mount or _repo_daemon.server_version(runner, parent["network_id"]) is None:
        return repo, []
    return repo, _checkpoint.labelled_running(runner, repo)


def _plan_checkpoint(op, parent, parent_seen, tag, ctx):
    """The live checkpoint of the parent for the fork; warnings when there is nothing to checkpoint."""
    repo, labelled = _labelled_running(op.runner, op.layout, parent, parent_seen)
    if not labelled:
        return ["checkpoint: %s has no running service labelled rediacc.checkpoint=true; the fork's "
                "services start fresh" % parent["name"]]
    name = ctx["checkpoint"] = _checkpoint_rules.FORK_PREFIX + tag
    ctx["parent_repo"] = repo

    def take():
        _checkpoint.delete(repo, name)  # left by an interrupted earlier fork
        _checkpoint.create(op.runner, repo, name, leave_running=True, lockbox_name=True)
    containers = ", ".join(sorted((c.get("Names") or ["/?"])[0].lstrip("/") for c in labelled))
    op.add("checkpoint", "checkpoint %s of %s as %s while they keep running" % (containers, parent["name"], name),
           take)
    return []


def _plan_fork(op, existing, parent, parent_seen, *, name, tag, opened, key, checkpoint=False):
    layout, runner, host = op.layout, op.runner, op.host
    if existing.record:
        # A fork of that name to replace, or an interrupted fork to redo.
        op.plan_discard(existing, remove_record=True)
    ctx = {}

    def write_record():
        ctx["record"] = _repository.new_record(host, name, parent["size"], parent["key_kind"], parent=parent,
                                               tag=tag, status=_state.FORKING)
        if ctx.get("checkpoint"):
            ctx["record"].update(restore_on_up=ctx["checkpoint"], address_aliases=sorted(
                set(parent.get("address_aliases") or []) | {parent["network_id"]}))
        host.put(ctx["record"])

    def guid():
        return ctx["record"]["guid"]

    op.add("record", "allocate a GUID and networkId for %s" % name, write_record)
    # After the record (a failed checkpoint leaves a fork to redo), right before the snapshot.
    warnings = _plan_checkpoint(op, parent, parent_seen, tag, ctx) if checkpoint else []
    freeze = layout.mount(parent["guid"]) if parent_seen.mount else None

    def clone():
        started = time.monotonic()
        errors = os.path.join(layout.state_dir, ".snapshot-errors")
        try:
            pause = faults.snapshot_pause_marker()
            _btrfs.snapshot(runner, layout.subvolume(parent["guid"]), layout.subvolume(guid()), freeze=freeze,
                            errors=errors, pause_marker=pause)
        except LockboxError as exc:
            detail = _read(errors)
            raise LockboxError("snapshot of %s failed: %s" % (parent["name"], detail or exc.msg),
                               cmd=exc.cmd, rc=exc.rc, stderr=detail) from None
        finally:
            if ctx.get("checkpoint"):
                _checkpoint.delete(ctx["parent_repo"], ctx["checkpoint"])  # the fork holds it; the parent not
        op.timings["clone"] = round((time.monotonic() - started) * 1000, 1)
    op.add("clone", "snapshot subvolume %s%s" % (layout.subvolume(parent["guid"]),
                                                 " (filesystem frozen for the instant)" if freeze else ""), clone)
    op.add("new-luks-uuid", "give the fork its own LUKS UUID",
           lambda: _cryptsetup.set_uuid(runner, layout.image(guid()), ctx["record"]["guid"]))
    op.add("ready", "mark %s ready" % name,
           lambda: (ctx["record"].update(status=_state.READY), host.put(ctx["record"])))
    if opened:
        fresh = _repository.Observed(layout, runner, None)
        op.plan_open(lambda: ctx["record"], fresh, key)
    return warnings


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.btrfs_fork."""
    return fork_repo(runner, _repository.layout_of(params), params["parent"], params["tag"],
                     opened=params.get("opened", True), key=_repository.key_of(params),
                     force=params.get("force", False), checkpoint=params.get("checkpoint", False),
                     check_mode=check_mode)
