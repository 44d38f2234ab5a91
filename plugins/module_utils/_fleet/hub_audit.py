# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's audit log: one JSON line per event in ``/var/log/rediacc/hub/<user>.log``.

Two sources: the Hub itself (logins, refused logins, stops, spawn failures) and each user's
daemon, whose container and image events are followed on its ``/events`` stream for as long
as the user's environment runs (followed again when the daemon comes back after a restart or
a restore). The Hub's own work on the user's container (``hub-<user>``) is not the user's
and is left out; what the user does with their daemon is in.
"""

from __future__ import annotations

import json
import os
import threading
import time
from urllib.parse import quote

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

LOG_DIR = "/var/log/rediacc/hub"
HUB_LOG = "_hub"  # records without a user (a refused login before the name was known); no user name starts so
CONTAINER_ACTIONS = frozenset(("create", "start", "stop", "destroy", "kill", "exec_create", "exec_start"))
IMAGE_ACTIONS = frozenset(("pull", "push"))
RETRY_SECONDS = 2.0


def timestamp(now=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


class AuditLog:
    """Appends records to one file per user (0640, root); safe from several threads."""

    def __init__(self, directory=LOG_DIR):
        self.directory, self.lock = directory, threading.Lock()

    def path(self, user):
        return os.path.join(self.directory, "%s.log" % (user if user and user != "-" else HUB_LOG))

    def write(self, record):
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        with self.lock:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
            fd = os.open(self.path(record.get("user")), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def hub_event(self, user, kind, **fields):
        """A record of the Hub's own (the ``audit`` callback of hub_server.Hub)."""
        self.write({"ts": timestamp(), "user": user, "type": "hub", "action": kind, "attrs": fields})


def daemon_record(event, user, network_id, own_container):
    """The audit record of one Docker event of a user's daemon, or None when it is not audited."""
    kind = event.get("Type")
    action = (event.get("Action") or "").split(":", 1)[0]
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    if kind == "container" and action in CONTAINER_ACTIONS:
        if attributes.get("name") == own_container:
            return None
        attrs = {k: attributes[k] for k in ("image", "name") if k in attributes}
        if action.startswith("exec_"):
            attrs["command"] = (event.get("Action") or "").split(":", 1)[-1].strip()[:512]
    elif kind == "image" and action in IMAGE_ACTIONS:
        attrs = {"image": actor.get("ID") or attributes.get("name", "")}
    else:
        return None
    seconds = event.get("time") or time.time()
    return {"ts": timestamp(seconds), "user": user, "net_id": network_id, "type": kind, "action": action,
            "resource": actor.get("ID", ""), "attrs": attrs}


def follow(runner, who, log, running, since=None):
    """Write the audit records of a user's daemon while ``running()`` says the environment runs.

    ``who``: {"user", "network_id", "socket" (the daemon's), "container" (the Hub's own for the user)}.
    """
    filters = quote(json.dumps({"type": ["container", "image"]}))
    since, seen = int(time.time()) if since is None else since, set()
    while running():
        try:
            # Followed again from the last event's second: the events of that second already
            # written are known by their nanosecond time, actor and action.
            for event in runner.api_stream(who["socket"], "/events?since=%d&filters=%s" % (since, filters)):
                key = (event.get("timeNano"), (event.get("Actor") or {}).get("ID"), event.get("Action"))
                if key in seen:
                    continue
                second = int(event.get("time") or since)
                if second > since:
                    since, seen = second, set()
                seen.add(key)
                record = daemon_record(event, who["user"], who["network_id"], who["container"])
                if record is not None:
                    log.write(record)
        except LockboxError:
            pass  # the daemon stopped or restarts: followed again from where it left off
        if running():
            time.sleep(RETRY_SECONDS)
