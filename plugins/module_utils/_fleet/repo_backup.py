# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_backup and ``renet backup``: backups of a repository on its host.

A backup is a read-only BTRFS snapshot of the repository's subvolume in
``<datastore>/backups/<guid>/<UTC stamp>-<6 hex>``: constant time, the encrypted image never
opened. ``hot``: the filesystem is frozen for the instant (crash-consistent, no downtime).
``cold``: down() of every Rediaccfile, the snapshot, up() again; the outage is measured. A
retention policy then removes exactly the expired backups. ``verify`` reads every byte of a
backup (BTRFS checks each block's checksum as it is read), compares its SHA-256 with the one
recorded at its first verify, and opens it read-only with the key for an ``e2fsck -n``.
``restore`` makes a backup a repository of its own (``as``): a fork of the repository when the
name is ``<repository>:<tag>`` (``repo_takeover`` then puts that data back in place), else a
new repository; like a fork it has a new GUID, networkId and LUKS UUID and no secrets.
One backup, prune, verify or restore at a time per datastore: another is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import backup as _rules
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import retention as _retention
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import transfer as _transfer_rules
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import e2fs as _e2fs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import losetup as _losetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import ssh as _ssh
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

LOCK_NAME = ".backup.lock"
CHECKSUM_SUFFIX = ".sha256"
ACTIONS = ("backup", "prune", "verify", "restore")
STRATEGY_DIR = "/etc/rediacc/backup"


@contextlib.contextmanager
def datastore_lock(layout):
    """The datastore's backup lock, or a clear refusal while another run holds it."""
    path = os.path.join(layout.datastore, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockboxError("another backup, prune, verify or restore is running on the datastore %s (it holds "
                               "%s): try again when it is done" % (layout.datastore, path)) from None
        yield
    finally:
        os.close(fd)


def list_backups(layout, guid):
    """{name: path} of the backups of repository ``guid``, oldest first."""
    directory = layout.backups(guid)
    if not os.path.isdir(directory):
        return {}
    return {entry: os.path.join(directory, entry) for entry in sorted(os.listdir(directory))
            if _rules.backup_time(entry) is not None and _btrfs.is_subvolume(os.path.join(directory, entry))}


def _delete_backup(runner, path):
    _btrfs.subvolume_delete(runner, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + CHECKSUM_SUFFIX)


def _plan_retention(names, retention, new=None):
    """(kept, expired) under ``retention`` of the backups ``names`` (and ``new``, about to be taken)."""
    timed = {n: _rules.backup_time(n) for n in names}
    if new is not None:
        timed[new] = _rules.backup_time(new)
    return _retention.plan(timed, retention)


def _unchanged_since(runner, layout, guid, backups):
    """The newest backup holds the repository's data as it is now (nothing written since it was taken)."""
    if not backups:
        return None
    newest = max(backups)
    shown = _btrfs.subvolume_show(runner, backups[newest])
    generation = shown.get("created_generation")
    if generation is None or _btrfs.written_since(runner, layout.subvolume(guid), generation):
        return None
    return newest


def backup(runner, layout, name, *, mode="hot", retention=None, check_mode=False, environ=None, now=None):
    """Take a backup of ``name`` (unless its newest backup holds its current data), then apply ``retention``."""
    _rules.check_mode(mode)
    if retention is not None:
        _retention.check_policy(retention)
    layout.check_datastore()
    record = _state.ready_record(layout.state_dir, name)
    guid = record["guid"]
    with datastore_lock(layout):
        backups = list_backups(layout, guid)
        seen = _repository.Observed(layout, runner, record, deep=False)
        if not seen.subvolume:
            raise LockboxError("the subvolume of %s is missing (%s)" % (name, layout.subvolume(guid)))
        actions, result = [], {"backup": None, "mode": mode, "outage_ms": None}
        current = _unchanged_since(runner, layout, guid, backups)
        new = None
        if current is None:
            new = _transfer_rules.snapshot_name(now or datetime.datetime.now(datetime.timezone.utc),
                                                os.urandom(3).hex())
            repo = _project.Repository.from_record(layout, record)
            cold = mode == "cold" and bool(seen.mount) and _repo_app.is_up(runner, repo)
            actions.extend(_backup_actions(layout, name, guid, new, mode, seen, cold))
            if not check_mode:
                result["outage_ms"] = _take(runner, layout, guid, new, seen, repo if cold else None,
                                            dict(os.environ if environ is None else environ))
            result["backup"] = new
        else:
            result["backup"] = current
            result["unchanged_since"] = current
        if retention is not None:
            kept, expired = _plan_retention(backups, retention, new)
            result.update(kept=kept, expired=expired)
            for old in expired:
                actions.append({"action": "expire", "detail": "remove backup %s (kept by no retention rule)" % old})
                if not check_mode:
                    _delete_backup(runner, backups[old])
        held = set(backups) | ({new} if new else set())
        result.update(changed=bool(actions), actions=actions,
                      backups=sorted(held - set(result.get("expired", []))))
        return result


def _backup_actions(layout, name, guid, new, mode, seen, cold):  # noqa: PLR0917
    path = "%s/%s" % (layout.backups(guid), new)
    if cold:
        return [{"action": "down", "detail": "run down() of every Rediaccfile of %s" % name},
                {"action": "snapshot", "detail": "read-only snapshot %s (cold: services down)" % path},
                {"action": "up", "detail": "run up() of every Rediaccfile of %s" % name}]
    how = " (filesystem frozen for the instant)" if seen.mount else ""
    note = " (cold backup of a repository that is not up: no services to bring down)" if mode == "cold" else ""
    return [{"action": "snapshot", "detail": "read-only snapshot %s%s%s" % (path, how, note)}]


def _take(runner, layout, guid, new, seen, cold_repo, environ):  # noqa: PLR0917
    """The snapshot (between down() and up() for a cold backup); the outage in ms, or None when hot."""
    directory = layout.backups(guid)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    freeze = layout.mount(guid) if seen.mount else None
    target = os.path.join(directory, new)
    if cold_repo is None:
        _btrfs.snapshot(runner, layout.subvolume(guid), target, freeze=freeze, readonly=True)
        return None
    started = time.monotonic()
    try:  # whatever fails here, up() runs: a backup never leaves the services down
        _repo_app.down(runner, cold_repo, environ)
        _btrfs.snapshot(runner, layout.subvolume(guid), target, freeze=freeze, readonly=True)
    finally:
        try:
            _repo_app.up(runner, cold_repo, environ)
        except LockboxError as exc:
            exc.msg = "the services of %s did not come up after the cold backup%s: %s" % (
                cold_repo.name, " (the backup %s was taken)" % new if _btrfs.is_subvolume(target) else "", exc.msg)
            exc.args = (exc.msg,)
            raise
    return round((time.monotonic() - started) * 1000, 1)


def prune(runner, layout, name, retention, *, check_mode=False):
    """Remove exactly the backups of ``name`` that ``retention`` keeps no more."""
    _retention.check_policy(retention)
    layout.check_datastore()
    record = _state.ready_record(layout.state_dir, name)
    with datastore_lock(layout):
        backups = list_backups(layout, record["guid"])
        kept, expired = _plan_retention(backups, retention)
        actions = [{"action": "expire", "detail": "remove backup %s (kept by no retention rule)" % old}
                   for old in expired]
        if not check_mode:
            for old in expired:
                _delete_backup(runner, backups[old])
        return {"changed": bool(expired), "actions": actions, "kept": kept, "expired": expired,
                "backups": sorted(kept)}


def _sha256(path, chunk=4 << 20):
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                return digest.hexdigest(), size
            digest.update(block)
            size += len(block)


def verify(runner, layout, name, key, *, at=None, check_mode=False):
    """Read backup ``at`` of ``name`` whole (checksums), compare its SHA-256, and open it read-only for e2fsck -n."""
    if key is None:
        raise InvalidInput("verify opens the backup: a key (key, passphrase or key_file) is needed")
    layout.check_datastore()
    record = _state.ready_record(layout.state_dir, name)
    with datastore_lock(layout):
        backups = list_backups(layout, record["guid"])
        chosen = _rules.pick(backups, at)
        image = os.path.join(backups[chosen], _repository.IMAGE_NAME)
        started = time.monotonic()
        try:
            digest, size = _sha256(image)
        except OSError as exc:
            raise LockboxError("backup %s of %s is damaged: reading %s failed (%s)"
                               % (chosen, name, image, exc.strerror)) from None
        recorded_file = backups[chosen] + CHECKSUM_SUFFIX
        recorded = _read(recorded_file)
        if recorded is not None and recorded != digest:
            raise LockboxError("backup %s of %s is damaged: its SHA-256 is %s, %s when first verified" % (
                chosen, name, digest, recorded))
        fsck = _trial_open(runner, image, key)
        actions = []
        if recorded is None:
            actions.append({"action": "record-checksum",
                            "detail": "record SHA-256 %s in %s" % (digest, recorded_file)})
            if not check_mode:
                _write(recorded_file, digest)
        return {"changed": bool(actions), "actions": actions, "backup": chosen, "sha256": digest, "bytes": size,
                "checksum": "recorded" if recorded is None else "matches", "fsck": fsck,
                "seconds": round(time.monotonic() - started, 1)}


def _trial_open(runner, image, key):
    """Open ``image`` read-only with ``key`` and check its filesystem without writing; always closed after."""
    device = _losetup.attach(runner, image, readonly=True)
    mapper = "lockbox-verify-" + os.urandom(4).hex()
    try:
        _cryptsetup.luks_open(runner, device, mapper, key.material, readonly=True)
        try:
            return _e2fs.check_readonly(runner, "/dev/mapper/" + mapper)
        finally:
            _cryptsetup.luks_close(runner, mapper)
    finally:
        _losetup.detach(runner, device)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def _write(path, text):
    with open(path + ".tmp", "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".tmp", path)


def restore(runner, layout, name, as_name, *, at=None, check_mode=False):
    """Backup ``at`` of ``name`` as repository ``as_name`` (a fork of ``name`` when ``<name>:<tag>``)."""
    _state.check_name(as_name, "restore_as")
    layout.check_datastore()
    record = _state.ready_record(layout.state_dir, name)
    parent, tag = None, None
    if ":" in as_name:
        if as_name.split(":", 1)[0] != name:
            raise InvalidInput("restore_as=%s: a name with a tag restores as a fork of %s (%s:<tag>); another "
                               "repository's fork cannot hold %s's data" % (as_name, name, name, name))
        parent, tag = record, as_name.split(":", 1)[1]
    with datastore_lock(layout), _state.HostState(layout.state_dir) as host:
        backups = list_backups(layout, record["guid"])
        chosen = _rules.pick(backups, at)
        existing = host.get(as_name)
        source = {"guid": record["guid"], "backup": chosen}
        if existing is not None:
            if existing.get("restored_from") == source and existing.get("status") == _state.READY:
                return {"changed": False, "actions": [], "backup": chosen, "repository": _describe(
                    runner, layout, host, existing)}
            raise InvalidInput("%s exists already: restore as another name, or delete it first" % as_name)
        actions = [
            {"action": "record", "detail": "allocate a GUID and networkId for %s" % as_name},
            {"action": "clone", "detail": "snapshot backup %s of %s as its subvolume" % (chosen, name)},
            {"action": "new-luks-uuid", "detail": "give %s its own LUKS UUID" % as_name},
            {"action": "ready", "detail": "mark %s ready" % as_name},
        ]
        if check_mode:
            return {"changed": True, "actions": actions, "backup": chosen, "repository": None}
        new = _repository.new_record(host, as_name, record["size"], record["key_kind"], parent=parent, tag=tag,
                                     status=_state.CREATING)
        new["restored_from"] = source
        host.put(new)
        try:
            os.makedirs(layout.repositories, mode=0o700, exist_ok=True)
            _btrfs.snapshot(runner, backups[chosen], layout.subvolume(new["guid"]))
            _cryptsetup.set_uuid(runner, layout.image(new["guid"]), new["guid"])
        except LockboxError as exc:
            if _btrfs.is_subvolume(layout.subvolume(new["guid"])):
                _btrfs.subvolume_delete(runner, layout.subvolume(new["guid"]))
            host.remove(as_name)
            exc.msg += " (nothing restored: %s removed again)" % as_name
            exc.args = (exc.msg,)
            raise
        new["status"] = _state.READY
        host.put(new)
        return {"changed": True, "actions": actions, "backup": chosen,
                "repository": _describe(runner, layout, host, new)}


def _describe(runner, layout, host, record):
    return _repository.describe(runner, layout, record, host.all())


def listing(layout, name):
    """The backups of ``name``, oldest first, with their time and whether a checksum is recorded."""
    record = _state.ready_record(layout.state_dir, name)
    return [{"name": n, "time": _retention.stamp(_rules.backup_time(n)), "path": path,
             "sha256": _read(path + CHECKSUM_SUFFIX)}
            for n, path in list_backups(layout, record["guid"]).items()]


def copy_target(strategy):
    """The host a strategy copies its repositories to (``copy_to``), or None."""
    copy_to = strategy.get("copy_to")
    return None if copy_to is None else _ssh.Target(copy_to["address"], port=copy_to["port"])


def check_strategy(runner, strategy, check_calendar=False):
    """``strategy`` checked in full (``check_calendar``: its schedule by systemd-analyze too)."""
    strategy = _rules.check_strategy(strategy, _state.check_name)
    try:
        copy_target(strategy)
    except InvalidInput as exc:
        raise InvalidInput("backup strategy %s: copy_to: %s" % (strategy["name"], exc.msg)) from None
    if check_calendar:
        _systemd.check_calendar(runner, strategy["schedule"])
    return strategy


def check_strategies(runner, strategies):
    """A role's whole list of strategies, checked before any of them is written; names unique."""
    if not isinstance(strategies, list):
        raise InvalidInput("backup strategies are a list, got %s" % type(strategies).__name__)
    checked = [check_strategy(runner, s, check_calendar=True) for s in strategies]
    names = [s["name"] for s in checked]
    if len(set(names)) != len(names):
        raise InvalidInput("two backup strategies are named %s" % sorted(n for n in names if names.count(n) > 1)[0])
    return checked


def load_strategy(runner, path, check_calendar=False):
    """The strategy in file ``path``, checked in full."""
    try:
        with open(path) as handle:
            strategy = json.load(handle)
    except OSError as exc:
        raise InvalidInput("cannot read backup strategy %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise InvalidInput("backup strategy %s is not JSON: %s" % (path, exc)) from None
    return check_strategy(runner, strategy, check_calendar=check_calendar)


def run_strategy(runner, name, say, directory=STRATEGY_DIR):
    """``renet backup run``: a backup of each repository of strategy ``name``, then its retention, then (with
    ``copy_to``) a copy of it to the other host; 1 if any failed."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_transfer as _transfer
    strategy = load_strategy(runner, os.path.join(directory, _rules.check_strategy_name(name) + ".json"))
    layout = _repository.Layout(strategy.get("datastore") or _repository.DEFAULT_DATASTORE)
    target = copy_target(strategy)
    failed = 0
    for repository in strategy["repositories"]:
        try:
            result = backup(runner, layout, repository, mode=strategy["mode"], retention=strategy["retention"])
        except LockboxError as exc:
            failed += 1
            say("renet backup %s: %s: FAILED: %s" % (name, repository, exc.msg))
            continue
        outage = "" if result["outage_ms"] is None else ", outage %.1f ms" % result["outage_ms"]
        taken = "kept %s (unchanged since)" % result["backup"] if result.get("unchanged_since") else \
            "took %s (%s%s)" % (result["backup"], result["mode"], outage)
        say("renet backup %s: %s: %s; expired %d%s" % (name, repository, taken, len(result["expired"]), (
            ": " + ", ".join(result["expired"])) if result["expired"] else ""))
        if target is None:
            continue
        try:
            copied = _transfer.push(runner, layout, repository, target)
        except LockboxError as exc:
            failed += 1
            say("renet backup %s: %s: copy to %s FAILED: %s" % (name, repository, target.address, exc.msg))
            continue
        say("renet backup %s: %s: copied to %s: %s" % (name, repository, target.address, (
            copied["transfer"]["mode"] + ", " + copied["transfer"]["line"]) if copied["changed"]
            else "unchanged since the last copy"))
    return 1 if failed else 0


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_backup."""
    layout, name, action = _repository.layout_of(params), params["name"], params.get("action") or "backup"
    if action == "backup":
        return backup(runner, layout, name, mode=params.get("mode") or "hot", retention=params.get("retention"),
                      check_mode=check_mode)
    if action == "prune":
        if not params.get("retention"):
            raise InvalidInput("action=prune needs a retention policy")
        return prune(runner, layout, name, params["retention"], check_mode=check_mode)
    if action == "verify":
        return verify(runner, layout, name, _repository.key_of(params), at=params.get("at"), check_mode=check_mode)
    if action == "restore":
        if not params.get("restore_as"):
            raise InvalidInput("action=restore needs as: the name of the repository the backup becomes "
                               "(<repository>:<tag> for a fork; repo_takeover then puts it in place)")
        return restore(runner, layout, name, params["restore_as"], at=params.get("at"), check_mode=check_mode)
    raise InvalidInput("action %r: one of %s" % (action, ", ".join(ACTIONS)))
