# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A process's ancestors and the environment each one started with, read from /proc."""

from __future__ import annotations

import os

PROC = "/proc"
MAX_DEPTH = 256  # a loop in a damaged or hostile /proc never hangs the caller


def _read(proc, pid, name):
    """The bytes of /proc/<pid>/<name>, or None when the process is gone or the file unreadable."""
    try:
        with open(os.path.join(proc, str(pid), name), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def parent_of(pid, proc=PROC):
    """The parent's pid (0 at the top), or None when the process is gone or unreadable."""
    stat = _read(proc, pid, "stat")
    if stat is None:
        return None
    # The command name is in parentheses and may itself hold ')' or spaces: fields follow the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def environ_of(pid, proc=PROC):
    """The environment the process was started with, or None when it cannot be read."""
    raw = _read(proc, pid, "environ")
    if raw is None:
        return None
    found = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            found[key.decode(errors="replace")] = value.decode(errors="replace")
    return found


def ancestors(pid=None, proc=PROC):
    """[(pid, environment or None)] of the parent, its parent, ... up to (not including) pid 0.

    The list ends with (pid, None) where a parent could not be read: the caller cannot tell
    what lies above it.
    """
    found = []
    current = os.getpid() if pid is None else pid
    for _depth in range(MAX_DEPTH):
        parent = parent_of(current, proc)
        if parent is None:
            found.append((current, None))
            return found
        if parent == 0:
            return found
        found.append((parent, environ_of(parent, proc)))
        if found[-1][1] is None:
            return found
        current = parent
    found.append((current, None))
    return found
