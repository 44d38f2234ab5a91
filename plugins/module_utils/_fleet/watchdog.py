# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The watchdog (``renet watchdog``): restart policies kept outside Docker, binds checked again first."""

from __future__ import annotations

import os
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import (
    InvalidInput,
    LockboxError,
)
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.paths import is_under
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker


def needs_restart(policy, container, attempts=0):
    """Docker's restart rules, applied by the watchdog (restart policies are stripped for CRIU)."""
    if container["state"] != "exited":
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if policy and policy.startswith("on-failure"):
        limit = policy.partition(":")[2]
        if limit.isdigit() and int(limit) > 0 and attempts >= int(limit):
            return False
        return container["exit_code"] not in (0, None)
    return False


def _mounts_still_inside(runner, network_id, container, mount):
    """Every bind of the container still resolves to where it was checked: dockerd resolves it again at start."""
    paths = _isolation.HostPaths(mount, container["project_dir"])
    for item in _docker.mounts(runner, _repo_daemon.docker_host(network_id), container["id"]):
        if item.get("Type") != "bind":
            continue
        resolved, why = paths.judge(item.get("Source") or "", read_only=not item.get("RW", True))
        if why or resolved != item.get("Source"):
            raise InvalidInput("not started: its bind mount %s now resolves to %s (%s)"
                               % (item.get("Source"), resolved, why or "a symbolic link appeared on the way"))


def _inside(path, mount):
    return is_under(os.path.realpath(path), os.path.realpath(mount))


def _mounts_by_network_id(layout):
    found = {}
    for record in _state.HostState(layout.state_dir).all():
        found[record["network_id"]] = layout.mount(record["guid"])
    return found


def watchdog_pass(runner, layout, socket_dir=_repo_daemon.SOCKET_DIR):
    """Start the stopped containers of every running repository daemon per their saved policy."""
    restarted = []
    try:
        sockets = sorted(os.listdir(socket_dir))
    except FileNotFoundError:
        return restarted
    mounts = _mounts_by_network_id(layout)
    for entry in sockets:
        match = re.match(r"docker-(\d+)\.sock$", entry)
        if not match or int(match.group(1)) not in mounts:
            continue
        network_id = int(match.group(1))
        try:
            found = _project.containers(runner, network_id)
        except LockboxError:
            continue  # a daemon that is stopping or starting: next pass
        for container in found:
            # Containers a fork inherited from its parent carry the parent's networkId and slice:
            # they are never started here (repo up removes them).
            if not container["project_dir"] or not container["service"] or \
                    container.get("network_id") != str(network_id):
                continue
            # The project directory comes from a container label: the watchdog reads and writes
            # its .rediacc.json only inside this repository's mount.
            if not _inside(container["project_dir"], mounts[network_id]):
                continue
            try:
                state = _project.load_project_state(container["project_dir"])
                policy = (state.get("restart") or {}).get(container["service"])
                attempts = (state.get("restarts") or {}).get(container["service"], 0)
                if container["service"] in (state.get("stopped") or []) or \
                        not needs_restart(policy, container, attempts):
                    continue
                _mounts_still_inside(runner, network_id, container, mounts[network_id])
                if policy.startswith("on-failure"):
                    state.setdefault("restarts", {})[container["service"]] = attempts + 1
                    _project.save_project_state(container["project_dir"], state)
                _docker.start(runner, _repo_daemon.docker_host(network_id), container["id"])
                restarted.append({"network_id": network_id, "container": container["name"], "policy": policy})
            except (LockboxError, OSError, ValueError) as exc:
                # One container that cannot start must not stop the watchdog for everyone else.
                restarted.append({"network_id": network_id, "container": container["name"],
                                  "error": getattr(exc, "msg", str(exc))})
    return restarted
