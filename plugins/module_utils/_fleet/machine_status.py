# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.machine_status and ``renet status|reconcile``: each repository's health, and its repair.

A repository is *wanted up* when its ``up()`` ran and no ``down()`` since (the stamp in its
volume, lockbox.fleet.repo_app) while it is mounted, and at boot when it is marked autostart
(lockbox.fleet.repo_autostart). ``reconcile`` repairs what is missing under a wanted
repository: closed at boot, or its daemon gone → the same ``repo up`` as the module (volume,
guard, daemon, ``up()``, routes); its daemon answering → its loopback guard converged and the
routes synced. Containers are the watchdog's (their own restart policy): a container an
operator stopped stays stopped. A repository brought down, or closed, is left alone. One
reconcile at a time per host (a lock); the boot run and the timer's never overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_autostart as _repo_autostart
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state

LOCK_FILE = "/run/rediacc/reconcile.lock"
DATASTORE_WAIT = 120.0


def health(runner, layout, record):
    """One repository's health: what is open and running, and whether it is what is wanted."""
    repo = _project.Repository.from_record(layout, record)
    seen = _repository.Observed(layout, runner, record, deep=False)
    mounted = bool(seen.mount)
    stamp = _repo_app.read_stamp(repo.mount) if mounted else None
    daemon = _repo_daemon.server_version(runner, record["network_id"]) is not None if mounted else False
    found = _project.containers(runner, record["network_id"]) if daemon else []
    failed = sorted(c["name"] for c in found if c["state"] != "running"
                    and not (c["state"] == "exited" and c["exit_code"] == 0))
    wanted = bool(stamp)
    up = wanted and daemon and _repo_app.is_up(runner, repo)
    return {"name": record["name"], "network_id": record["network_id"], "status": record.get("status"),
            "autostart": bool(record.get(_repo_autostart.FIELD)), "opened": seen.mapper, "mounted": mounted,
            "wanted_up": wanted, "daemon": daemon, "containers": len(found), "failed_containers": failed,
            "up": bool(up), "healthy": (not wanted) or bool(up)}


def status(runner, layout):
    """The health of every repository of this host, by name."""
    records = sorted(_state.HostState(layout.state_dir).all(), key=lambda r: r["name"])
    return {"repositories": [health(runner, layout, r) for r in records]}


@contextlib.contextmanager
def _reconcile_lock(path):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the boot run first, then the timer's: wait, never overlap
        yield
    finally:
        os.close(fd)


def _wait_for_datastore(layout, wait, sleep, clock):
    deadline = clock() + wait
    while not os.path.ismount(layout.datastore):
        if clock() >= deadline:
            raise LockboxError("the datastore %s is not mounted after %d s: nothing to start" % (
                layout.datastore, wait))
        sleep(1.0)


def reconcile(runner, layout, say, *, boot=False, check_mode=False, lock=LOCK_FILE,
              wait=DATASTORE_WAIT, sleep=time.sleep, clock=time.monotonic):
    """Bring every wanted repository up (``boot``: the autostart ones too); one line each. 1 if any failed."""
    failed = 0
    with _reconcile_lock(lock):
        if boot:
            _wait_for_datastore(layout, wait, sleep, clock)
        for record in sorted(_state.HostState(layout.state_dir).all(), key=lambda r: r["name"]):
            name, autostart = record["name"], record.get(_repo_autostart.FIELD)
            if record.get("status") != _state.READY:
                continue
            mount = layout.mount(record["guid"])
            wanted = (boot and autostart) or (os.path.ismount(mount) and _repo_app.read_stamp(mount))
            if not wanted:
                continue
            try:
                result = _repair(runner, layout, record, check_mode)
            except LockboxError as exc:
                failed += 1
                say("renet reconcile: %s: FAILED: %s" % (name, exc.msg))
                continue
            done = ", ".join(a["action"] for a in result["actions"])
            say("renet reconcile: %s: %s" % (name, ("would " if check_mode else "") + done if done else "up"))
    return 1 if failed else 0


def _repair(runner, layout, record, check_mode):
    """Closed or without its daemon: ``repo up``. Its daemon answering: the guard and the routes only."""
    name, autostart = record["name"], record.get(_repo_autostart.FIELD)
    mounted = os.path.ismount(layout.mount(record["guid"]))
    if not mounted or _repo_daemon.server_version(runner, record["network_id"]) is None:
        key = _repository.key_from(key_file=autostart["key_file"]) if autostart and not mounted else None
        return _repo_app.converge_app(runner, layout, name, state="up", key=key, check_mode=check_mode)
    result = _loopback_net.converge_network(runner, name, state="present", state_dir=layout.state_dir,
                                            check_mode=check_mode)
    actions = [dict(a, action="network:" + a["action"]) for a in result["actions"]]
    settings = _routes.load_settings()
    if settings and not check_mode:
        changed, _table = _routes.sync(runner, layout.state_dir, settings)
        if changed:
            actions.append({"action": "routes:sync", "detail": "the router's routes written again"})
    return {"actions": actions}


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.machine_status (reads only)."""
    result = status(runner, _repository.layout_of(params))
    result.update(changed=False, unhealthy=[r["name"] for r in result["repositories"] if not r["healthy"]])
    return result
