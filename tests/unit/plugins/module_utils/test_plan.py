# SPDX-License-Identifier: GPL-3.0-or-later
"""The one plan helper: check mode applies nothing, a failure names what was already done."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan


def steps(log):
    def fail():
        raise LockboxError("mount failed")
    return [Action("open", "open it", lambda: log.append("open")), Action("mount", "mount it", fail),
            Action("start", "start it", lambda: log.append("start"))]


def test_check_mode_reports_and_applies_nothing():
    log = []
    assert [r["action"] for r in apply_plan(steps(log), check_mode=True)] == ["open", "mount", "start"]
    assert log == []


def test_a_failure_reports_the_steps_already_applied_and_stops():
    log = []
    with pytest.raises(LockboxError) as err:
        apply_plan(steps(log))
    assert log == ["open"]
    assert err.value.actions == [{"action": "open", "detail": "open it"}]
    assert err.value.msg == "mount failed (already done: open)"
    assert err.value.as_result()["actions"] == [{"action": "open", "detail": "open it"}]
