# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_app: repo up / repo down (``renet up|down|info``): volume, guard, daemon, Rediaccfiles."""

from __future__ import annotations

import json
import os

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import (
    InvalidInput,
    LockboxError,
    with_actions_taken,
)
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _checkpoint
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker


def remove_inherited(runner, repo, check_mode=False):
    """Remove containers whose networkId is not this repository's (a fork inherits its parent's)."""
    foreign = [c for c in _project.containers(runner, repo.network_id)
               if c.get("network_id") and c["network_id"] != str(repo.network_id)]
    if foreign and not check_mode:
        _docker.remove(runner, _repo_daemon.docker_host(repo.network_id), [c["id"] for c in foreign])
    return [c["name"] for c in foreign]


def read_stamp(mount):
    try:
        with open(os.path.join(mount, _project.UP_STAMP)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def is_up(runner, repo):
    """up() ran for the current Rediaccfiles in this repository, the daemon answers and no container has failed.

    The stamp names the networkId it was written for: a fork's volume carries its parent's
    stamp, and the fork's own containers do not exist yet.
    """
    stamp = read_stamp(repo.mount)
    if not stamp or stamp.get("fingerprint") != _project.fingerprint(repo.mount) or \
            stamp.get("network_id") != repo.network_id:
        return False
    if _repo_daemon.server_version(runner, repo.network_id) is None:
        return False
    return all(c["state"] == "running" or (c["state"] == "exited" and c["exit_code"] == 0)
               for c in _project.containers(runner, repo.network_id))


def routes_of(repo, found, machine, base_domain, *, parent=None, tag=None):
    """URLs of the services labelled rediacc.service_port (the naming rule lives in _routes)."""

    record = {"name": repo.name, "parent": parent, "tag": tag}
    return sorted({"https://" + _routes.route_host(c["service"], record, machine, base_domain)
                   for c in found if c.get("service_port") and c.get("service")})


def up(runner, repo, environ, check_mode=False):
    """Run up() of every Rediaccfile unless the repository is already up; returns (changed, outputs)."""
    if is_up(runner, repo):
        return False, {}
    outputs = {}
    if not check_mode:
        ips = _project.service_environment(repo, _project.mount_slots(repo))
        for rediaccfile in _project.rediaccfiles(repo.mount):
            try:
                outputs[rediaccfile] = _project.run_function(runner, repo, rediaccfile, "up", environ, ips)
            except LockboxError as exc:
                raise with_actions_taken(exc, [{"action": "up", "detail": "up() of %s" % path}
                                               for path in outputs]) from None
        path = os.path.join(repo.mount, _project.UP_STAMP)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "w") as handle:
            json.dump({"fingerprint": _project.fingerprint(repo.mount), "network_id": repo.network_id}, handle)
    return True, outputs


def down(runner, repo, environ, check_mode=False):
    """Run down() of every Rediaccfile (in reverse order) while the daemon answers."""
    outputs = {}
    if _repo_daemon.server_version(runner, repo.network_id) is None:
        return False, outputs
    if not check_mode:
        ips = _project.service_environment(repo, _project.mount_slots(repo))
        for rediaccfile in reversed(_project.rediaccfiles(repo.mount)):
            outputs[rediaccfile] = _project.run_function(runner, repo, rediaccfile, "down", environ, ips)
        try:
            os.unlink(os.path.join(repo.mount, _project.UP_STAMP))
        except FileNotFoundError:
            pass
    return True, outputs


def info(runner, repo, environ):
    ips = _project.service_environment(repo, _project.mount_slots(repo))
    return {path: _project.run_function(runner, repo, path, "info", environ, ips)
            for path in _project.rediaccfiles(repo.mount)}


class _Lifecycle:
    """One repo up or down: the steps of each layer, reported with the layer's name."""

    def __init__(self, runner, layout, name, environ, check_mode):
        self.runner, self.layout, self.name, self.check_mode = runner, layout, name, check_mode
        self.environ = environ
        self.record = _state.ready_record(layout.state_dir, name)
        self.repo = _project.Repository.from_record(layout, self.record)
        self.actions, self.outputs, self.restored = [], {}, {}

    def note(self, step, result):
        self.actions.extend(dict(a, action="%s:%s" % (step, a["action"])) for a in result["actions"])

    def add(self, action, detail):
        self.actions.append({"action": action, "detail": detail})

    def up(self, key, skip_checkpoint=False):
        runner, layout, name, check_mode, repo = self.runner, self.layout, self.name, self.check_mode, self.repo
        self.note("volume", _luks_repo.converge_repo(runner, layout, name, state="opened", key=key,
                                                     check_mode=check_mode))
        self.note("network", _loopback_net.converge_network(runner, name, state="present",
                                                            state_dir=layout.state_dir, check_mode=check_mode))
        if check_mode and not os.path.ismount(repo.mount):
            self.add("daemon:start", "start the repository's dockerd")
            if self.record.get(_checkpoint.RECORD_PENDING):  # a fork with checkpoint, never up yet
                self.add("checkpoint:restore", "restore checkpoint %s into its services"
                         % self.record[_checkpoint.RECORD_PENDING])
            self.add("up", "run up() of every Rediaccfile")
            return
        self.note("daemon", _repo_daemon.converge_daemon(runner, layout, name, state="started", check_mode=check_mode))
        inherited = remove_inherited(runner, repo, check_mode=check_mode) \
            if _repo_daemon.server_version(runner, repo.network_id) else []
        if inherited:
            self.add("remove-inherited", "remove %d container(s) of another networkId (inherited from the "
                     "parent): %s" % (len(inherited), ", ".join(inherited)))
        restoring = _checkpoint.pending(repo.mount, self.record)
        if restoring and skip_checkpoint:
            self.add("checkpoint:skip", "start fresh, without checkpoint %s" % restoring)
            if not check_mode:
                _checkpoint.clear_pending(repo.mount, layout.state_dir, name)
            restoring = None
        environ = self.environ
        if restoring:
            self.add("checkpoint:restore", "restore checkpoint %s into its services" % restoring)
            environ = dict(environ, **{_checkpoint.RESTORE_ENV: _checkpoint.path_of(repo.mount, restoring)})
        changed, self.outputs = up(runner, repo, environ, check_mode=check_mode)
        if changed:
            self.add("up", "run up() of %d Rediaccfile(s)" % len(_project.rediaccfiles(repo.mount)))
        if restoring and not check_mode:
            self.restored = _checkpoint.restored_outcome(repo.mount, restoring)
            # Restored or started fresh: never restored twice.
            _checkpoint.clear_pending(repo.mount, layout.state_dir, name)

    def down(self, unmount, checkpoint=False):
        if os.path.ismount(self.repo.mount):
            if checkpoint and _repo_daemon.server_version(self.runner, self.repo.network_id):
                self.note("checkpoint", {"actions": _checkpoint.checkpoint_for_down(
                    self.runner, self.repo, check_mode=self.check_mode)})
            changed, self.outputs = down(self.runner, self.repo, self.environ, check_mode=self.check_mode)
            if changed:
                self.add("down", "run down() of every Rediaccfile")
            self.note("daemon", _repo_daemon.converge_daemon(self.runner, self.layout, self.name, state="stopped",
                                                             check_mode=self.check_mode))
        if unmount:
            self.note("volume", _luks_repo.converge_repo(self.runner, self.layout, self.name, state="closed",
                                                         check_mode=self.check_mode))
            if os.path.isdir(_secrets.directory(self.repo.network_id)):
                self.add("secrets:remove-files", "remove the file secrets from %s"
                         % _secrets.directory(self.repo.network_id))
                if not self.check_mode:
                    _repo_secret.remove_files(self.repo.network_id)


def converge_app(runner, layout, name, *, state, key=None, unmount=False, run_info=False, machine="",
                 base_domain="", check_mode=False, environ=None, checkpoint=False, skip_checkpoint=False):
    """repo up (state=up) / repo down (state=down) of repository ``name``."""
    if state not in ("up", "down"):
        raise InvalidInput("state must be up or down, got %r" % (state,))
    run = _Lifecycle(runner, layout, name, dict(os.environ if environ is None else environ), check_mode)
    try:
        if state == "up":
            run.up(key, skip_checkpoint=skip_checkpoint)
        else:
            run.down(unmount, checkpoint=checkpoint)
    except LockboxError as exc:
        raise with_actions_taken(exc, run.actions) from None
    found = _project.containers(runner, run.repo.network_id) if state == "up" and not check_mode else []
    # The router (if this host has one) follows at once, not at the watchdog's next pass.
    router = _routes.load_settings()
    conflicts = []
    if router and not check_mode:
        _changed, table = _routes.sync(runner, layout.state_dir, router)
        conflicts = [c for c in table["conflicts"] if c["repository"] == name]
    if router and not machine:
        machine, base_domain = router["machine"], router["base_domain"]
    if run_info and found:
        run.outputs.update({"info:" + k: v for k, v in info(runner, run.repo, run.environ).items()})
    record = run.record
    parent, tag = (record["parent"], record.get("tag")) if record.get("parent") else (None, None)
    urls = routes_of(run.repo, found, machine, base_domain, parent=parent, tag=tag) if machine and base_domain else []
    result = {"changed": bool(run.actions), "actions": run.actions, "outputs": run.outputs, "containers": found,
              "urls": urls, "conflicts": conflicts}
    if run.restored:
        result["restored"] = run.restored
        result.setdefault("warnings", []).extend(
            "%s started fresh: its restore failed (%s); the checkpoint is kept" % (container, outcome["error"])
            for container, outcome in sorted(run.restored.items()) if outcome.get("error"))
    if conflicts:
        # Reported, never silent: another repository already holds these ports or domains.
        result.setdefault("warnings", []).extend(
            "%s %s of service %s is not routed here: %s holds it"
            % (c["protocol"], c.get("host") or c["port"], c["service"], c["taken_by"]) for c in conflicts)
    return result


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_app."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
    return converge_app(runner, _repository.layout_of(params), params["name"], state=params["state"],
                        key=_repository.key_of(params), unmount=params.get("unmount", False),
                        run_info=params.get("info", False), machine=params.get("machine") or "",
                        base_domain=params.get("base_domain") or "", check_mode=check_mode,
                        checkpoint=params.get("checkpoint", False),
                        skip_checkpoint=params.get("skip_checkpoint", False))
