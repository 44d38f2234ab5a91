# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-suite callback: the slowest tasks of each playbook run, and a JSON line per run.

Enabled by the Molecule configuration (never shipped in the collection). At the end of
each ansible-playbook run it prints the 15 slowest tasks and, when LOCKBOX_TIMINGS names a
file, appends {"playbook", "seconds", "tasks": [[name, seconds], ...]} to it, which
scripts/molecule_suite.py reads for the suite's summary.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_timer
type: aggregate
short_description: slowest tasks of a playbook run, for the test suite
description:
  - Prints the 15 slowest tasks at the end of each run and appends them as JSON to the
    file named by the LOCKBOX_TIMINGS environment variable.
requirements:
  - enabled in the callbacks_enabled setting
"""


SHOWN = 15


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started = time.monotonic()
        self._playbook = ""
        self._current = None
        self._tasks = []

    def _close_current(self):
        if self._current is not None:
            name, started = self._current
            self._tasks.append((name, time.monotonic() - started))
            self._current = None

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.basename(playbook._file_name)

    def _start(self, task):
        self._close_current()
        # get_name() already leads with the role's name for a role's task.
        self._current = (task.get_name(), time.monotonic())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def v2_playbook_on_stats(self, stats):
        self._close_current()
        total = time.monotonic() - self._started
        slowest = sorted(self._tasks, key=lambda item: item[1], reverse=True)[:SHOWN]
        self._display.display("TASK TIMES %s: %.1f s in %d tasks; slowest:" % (self._playbook, total, len(self._tasks)))
        for name, seconds in slowest:
            self._display.display("  %7.1f s  %s" % (seconds, name))
        target = os.environ.get("LOCKBOX_TIMINGS")
        if target:
            with open(target, "a") as handle:
                handle.write(json.dumps({"playbook": self._playbook, "seconds": round(total, 1),
                                         "tasks": [[n, round(s, 1)] for n, s in slowest]}) + "\n")
