# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection for the kill tests: the one place, off unless LOCKBOX_FAULT_PAUSE is set.

With ``LOCKBOX_FAULT_PAUSE=<action>``, an operation stops right after that action, writes
its pid to PAUSE_MARKER and waits to be killed, so a test can kill it half way. A fork's
freeze step reads the same setting (``snapshot_pause_marker``).
"""

from __future__ import annotations

import os
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

PAUSE_ENV = "LOCKBOX_FAULT_PAUSE"
PAUSE_MARKER = "/run/lockbox-fault-paused"


def pause_requested(action):
    return bool(action) and os.environ.get(PAUSE_ENV) == action


def pause_after(action):
    """Called after every applied action; pauses only where the environment asks for it."""
    if not pause_requested(action):
        return
    with open(PAUSE_MARKER, "w") as handle:
        handle.write("%d %s\n" % (os.getpid(), action))
    time.sleep(600)
    raise LockboxError("fault pause after %s was not ended by a kill" % action)


def snapshot_pause_marker():
    """The marker a fork's freeze-snapshot-thaw script writes while frozen, or "" (no pause)."""
    return PAUSE_MARKER if pause_requested("frozen") else ""
