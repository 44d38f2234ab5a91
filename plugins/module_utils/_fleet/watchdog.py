# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The watchdog (``renet watchdog``): restart policies kept outside Docker, binds checked again first.

It reacts to events instead of polling: one thread per repository daemon follows that daemon's
container events (``GET /events``), and only a daemon that reported one is looked at. A slow
safety pass over every daemon (and the routes) catches anything an event could not tell, and a
container that could not be started is tried again a few seconds later. Idle, it wakes every
few seconds to list the socket directory: its cost does not grow with the number of repositories.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from urllib.parse import quote

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


def _held_back(container, state, policy, attempts):
    """Why an exited container its policy would restart is left stopped, or None."""
    if container["state"] != "exited" or not policy or policy == "no":
        return None
    if container["service"] in (state.get("stopped") or []):
        return "stopped on purpose (renet compose stop/down); the next up or start starts it"
    if not needs_restart(policy, container, attempts) and policy.startswith("on-failure") and \
            container["exit_code"] not in (0, None):
        return "%s: %d restart(s) done, the limit" % (policy, attempts)
    return None


def _mounts_still_inside(runner, network_id, container, mount):
    """Every bind of the container still resolves to where it was checked: dockerd resolves it again at start."""
    paths = _isolation.HostPaths(mount, container["project_dir"], network_id=network_id)
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


SAFETY_PASS = 300.0  # seconds between passes over every daemon and the routes
TICK = 2.0  # seconds between looks at the socket directory when nothing happens
RETRY = 5.0  # seconds before a daemon whose container could not be started is looked at again
EVENTS = ("start", "die", "stop", "destroy")


def socket_entries(socket_dir=_repo_daemon.SOCKET_DIR):
    """networkId -> socket of every daemon socket present: one directory listing, nothing else."""
    try:
        entries = os.listdir(socket_dir)
    except FileNotFoundError:
        return {}
    found = {}
    for entry in entries:
        match = re.fullmatch(r"docker-(\d+)\.sock", entry)
        if match:
            found[int(match.group(1))] = os.path.join(socket_dir, entry)
    return found


def daemon_sockets(layout, socket_dir=_repo_daemon.SOCKET_DIR):
    """networkId -> socket of every repository daemon socket present (of repositories this host knows)."""
    known = _mounts_by_network_id(layout)
    return {n: path for n, path in socket_entries(socket_dir).items() if n in known}


class Watch:
    """Which daemons to look at, and when: the event loop's decisions, without any I/O."""

    def __init__(self, safety=SAFETY_PASS, retry=RETRY):
        self.safety, self.retry = safety, retry
        self.followed = set()
        self.dirty = set()
        self.routes_dirty = True
        self.last_full = None
        self.retry_at = {}

    def tick(self, now, present, events=(), ended=()):
        """(daemons to follow from now on, daemons to pass over, whether to sync the routes)."""
        present = set(present)
        self.followed -= set(ended)  # its event stream ended: follow it again if it is still there
        new = present - self.followed
        if new or (self.followed - present):
            self.routes_dirty = True
        self.followed = present
        self.dirty |= new | (set(events) & present)
        if events:
            self.routes_dirty = True
        if self.last_full is None or now - self.last_full >= self.safety:
            self.dirty |= present
            self.routes_dirty = True
            self.last_full = now
        self.dirty |= {n for n, at in self.retry_at.items() if now >= at and n in present}
        passes, routes = sorted(self.dirty), self.routes_dirty
        self.dirty, self.routes_dirty = set(), False
        return sorted(new), passes, routes

    def outcome(self, now, network_id, failed):
        """A daemon with a container that could not be started is looked at again after ``retry``."""
        if failed:
            self.retry_at[network_id] = now + self.retry
        else:
            self.retry_at.pop(network_id, None)


def follow_events(runner, network_id, socket_path, events, ended):
    """Queue ``network_id`` for every container event of its daemon, until the daemon goes away."""
    filters = quote(json.dumps({"type": ["container"], "event": list(EVENTS)}))
    try:
        for _event in runner.api_stream(socket_path, "/events?filters=" + filters):
            events.put(network_id)
    except LockboxError:
        pass  # not answering (starting, stopping): the next tick follows it again
    finally:
        ended.put(network_id)


def worth_reporting(held_before, outcomes):
    """(outcomes to report, containers left stopped now): a container left stopped is reported
    once, not at every pass that sees it again, and again once it ran in between."""
    held_now = {e["id"]: e["left"] for e in outcomes if "left" in e}
    return [e for e in outcomes if "left" not in e or held_before.get(e["id"]) != e["left"]], held_now


def _drain(channel):
    found = []
    while True:
        try:
            found.append(channel.get_nowait())
        except queue.Empty:
            return found


def serve(runner, layout, *, report, sync_routes, safety=SAFETY_PASS, socket_dir=_repo_daemon.SOCKET_DIR,
          once=False):
    """The watchdog's loop: ``report(event)`` for each start or refusal, ``sync_routes()`` when they may change."""
    watch, events, ended = Watch(safety=safety), queue.Queue(), queue.Queue()
    held, listed, sockets = {}, None, {}
    while True:
        now = time.monotonic()
        # Idle, a tick is one directory listing: the host's records are read only when the
        # sockets present changed.
        present = socket_entries(socket_dir)
        if present != listed:
            listed, sockets = present, daemon_sockets(layout, socket_dir)
        follow, passes, routes = watch.tick(now, sockets, _drain(events), _drain(ended))
        for network_id in follow if not once else ():
            threading.Thread(target=follow_events, args=(runner, network_id, sockets[network_id], events, ended),
                             name="events-%d" % network_id, daemon=True).start()
        for network_id in passes:
            outcomes = watchdog_pass(runner, layout, socket_dir=socket_dir, only={network_id})
            shown, held[network_id] = worth_reporting(held.get(network_id, {}), outcomes)
            for event in shown:
                report(event)
            watch.outcome(now, network_id, failed=any("error" in e for e in outcomes))
        if routes:
            sync_routes()
        if once:
            return
        try:
            events.put(events.get(timeout=TICK))  # woken by an event, or after a tick
        except queue.Empty:
            pass


def watchdog_pass(runner, layout, socket_dir=_repo_daemon.SOCKET_DIR, only=None):
    """Start the stopped containers of running repository daemons (``only`` these networkIds) per their policy."""
    restarted = []
    mounts = _mounts_by_network_id(layout)
    for network_id in sorted(n for n in socket_entries(socket_dir) if n in mounts):
        if only is not None and network_id not in only:
            continue
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
                held = _held_back(container, state, policy, attempts)
                if held:
                    restarted.append({"network_id": network_id, "container": container["name"], "left": held,
                                      "id": container["id"]})
                if held or not needs_restart(policy, container, attempts):
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
