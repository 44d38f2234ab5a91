# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Repository identity and host state: names, GUIDs, networkIds, records, the host lock.

State lives outside the encrypted images, one human-readable JSON file per repository
(``<state_dir>/repos/<name>.json``), so name, GUID, parent and fork status survive a
locked volume. Every change to it happens under one host-wide lock.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import ipaddress
import json
import os
import re
import time
import uuid

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError

DEFAULT_STATE_DIR = "/var/lib/rediacc/state"
NAME_MAX = 64
# One segment of a name: the repository, or a fork's tag. A fork is "<parent>:<tag>".
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TAG_MAX = 32

# Compatible numbering (DESIGN.md): 2816 + 64*k, below 32768 where the Hub starts.
NETWORK_ID_FIRST = 2816
NETWORK_ID_STEP = 64
NETWORK_ID_LIMIT = 32768
LOOPBACK = ipaddress.IPv4Address("127.0.0.0")

# Lifecycle of a record; anything but "ready" marks an operation that did not finish.
READY = "ready"
CREATING = "creating"
FORKING = "forking"
DELETING = "deleting"


def now():
    """The time stamp of records: UTC, whole seconds, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def check_segment(value, what, limit):
    if not isinstance(value, str) or not value:
        raise InvalidInput("%s must be a non-empty string" % what)
    if "\0" in value:
        raise InvalidInput("%s must not contain a NUL byte" % what)
    if len(value) > limit:
        raise InvalidInput("%s %r is too long (%d characters, at most %d)" % (what, value, len(value), limit))
    if ".." in value or not _SEGMENT.fullmatch(value):
        raise InvalidInput(
            "%s %r is not valid: use letters, digits, '.', '_' and '-', starting with a letter or digit "
            "(no '/', spaces, ':' or '..')" % (what, value))
    return value


def check_name(name, what="name"):
    """A repository name: one segment, or '<parent>:<tag>' segments for forks."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("%s must be a non-empty string" % what)
    if len(name) > NAME_MAX:
        raise InvalidInput("%s %r is too long (%d characters, at most %d)" % (what, name[:80], len(name), NAME_MAX))
    for segment in name.split(":"):
        check_segment(segment, what, NAME_MAX)
    return name


def check_tag(tag):
    return check_segment(tag, "tag", TAG_MAX)


def fork_name(parent, tag):
    name = "%s:%s" % (parent, check_tag(tag))
    if len(name) > NAME_MAX:
        raise InvalidInput("fork name %r is too long (%d characters, at most %d)" % (name, len(name), NAME_MAX))
    return name


def subnet(network_id):
    """networkId n owns the /26 at 127.0.0.0 + n (6336 -> 127.0.24.192/26)."""
    return str(ipaddress.IPv4Network((int(LOOPBACK) + network_id, 26)))


def allocate_network_id(used):
    for network_id in range(NETWORK_ID_FIRST, NETWORK_ID_LIMIT, NETWORK_ID_STEP):
        if network_id not in used:
            return network_id
    raise LockboxError("no free networkId below %d: the host has %d repositories" % (NETWORK_ID_LIMIT, len(used)))


class HostState:
    """The state directory of one host. Use as a context manager to hold the lock."""

    def __init__(self, state_dir=DEFAULT_STATE_DIR, lock_timeout=120.0):
        self.state_dir = state_dir
        self.repo_dir = os.path.join(state_dir, "repos")
        self.lock_timeout = lock_timeout
        self._lock_fd = None

    def __enter__(self):
        os.makedirs(self.repo_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise LockboxError("another lockbox operation holds %s/.lock" % self.state_dir) from None
                time.sleep(0.1)
        self._lock_fd = fd
        return self

    def __exit__(self, *exc):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _path(self, name):
        return os.path.join(self.repo_dir, check_name(name) + ".json")

    def get(self, name):
        try:
            with open(self._path(name)) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise LockboxError("state file of %s is damaged: %s" % (name, exc)) from None

    def all(self):
        records = []
        if not os.path.isdir(self.repo_dir):
            return records
        for entry in sorted(os.listdir(self.repo_dir)):
            if entry.endswith(".json"):
                with open(os.path.join(self.repo_dir, entry)) as handle:
                    try:
                        records.append(json.load(handle))
                    except ValueError:
                        continue
        return records

    def put(self, record):
        """Write atomically (temp file, fsync, rename): a crash leaves old or new, never half."""
        if self._lock_fd is None:
            raise LockboxError("state written without holding the host lock")
        path = self._path(record["name"])
        temporary = path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        _fsync_dir(self.repo_dir)

    def remove(self, name):
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        _fsync_dir(self.repo_dir)

    def new_identity(self):
        """A fresh GUID and the lowest free networkId (call with the lock held)."""
        used = {r["network_id"] for r in self.all()}
        return str(uuid.uuid4()), allocate_network_id(used)

    def children(self, guid):
        return sorted(r["name"] for r in self.all() if r.get("parent_guid") == guid)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ready_record(state_dir, name):
    """The record of a repository that exists and is ready; a clear error otherwise."""
    check_name(name)
    record = HostState(state_dir).get(name)
    if record is None:
        raise InvalidInput("unknown repository %r" % name)
    if record.get("status") != READY:
        raise LockboxError("%s is in state %r from an interrupted operation: run repo_prune" % (name, record["status"]))
    return record
