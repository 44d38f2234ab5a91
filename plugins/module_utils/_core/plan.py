# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planned steps and the one way every module applies them: observe → plan → apply → report."""

from __future__ import annotations

import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core import faults
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError, with_actions_taken


class Action:
    __slots__ = ("apply", "detail", "name")

    def __init__(self, name, detail, apply):
        self.name = name
        self.detail = detail
        self.apply = apply

    def report(self):
        return {"action": self.name, "detail": self.detail}


def apply_plan(actions, check_mode=False, timings=None):
    """Apply ``actions`` in order (none in check mode); return their reports.

    A failing step raises its error with the steps already applied attached, so a failure
    never hides what it changed. ``timings`` (a dict) receives each step's wall time in ms.
    """
    reports = [a.report() for a in actions]
    if check_mode:
        return reports
    for index, action in enumerate(actions):
        started = time.monotonic()
        try:
            action.apply()
        except LockboxError as exc:
            raise with_actions_taken(exc, reports[:index]) from None
        if timings is not None:
            timings.setdefault(action.name, round((time.monotonic() - started) * 1000, 1))
        faults.pause_after(action.name)
    return reports
