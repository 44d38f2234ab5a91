# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_schedule: strategies checked before anything is written, files and timers planned and applied
with exact argv, a repeat unchanged, stale strategies removed, a failed step rolled back."""

import json
import os
import stat

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import backup_schedule as _schedule
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_backup as _backup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

from ...conftest import FakeRunner

MISSING = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nFragmentPath=\nUnitFileState=\n"
RUNNING = "LoadState=loaded\nActiveState=active\nSubState=waiting\nFragmentPath=x\nUnitFileState=enabled\n"
LEDGER = {"name": "ledger-hourly", "repositories": ["ledger"], "schedule": "hourly", "retention": {"last": 3}}
SHOW = ["-p", "LoadState,ActiveState,SubState,FragmentPath,UnitFileState"]


@pytest.fixture
def etc(tmp_path, monkeypatch):
    monkeypatch.setattr(_systemd, "UNIT_DIR", str(tmp_path / "systemd"))
    monkeypatch.setattr(_backup, "STRATEGY_DIR", str(tmp_path / "backup"))
    (tmp_path / "systemd").mkdir()
    return tmp_path


def runner_for(timers, schedules=("hourly",)):
    runner = FakeRunner()
    for schedule in schedules:
        runner.answer(["systemd-analyze", "calendar", "--", schedule], "  Original form: %s\n" % schedule)
    for unit, shown in timers.items():
        runner.answer(["systemctl", "show", unit], shown)
    runner.silent(["systemctl", "daemon-reload"], ["systemctl", "enable", "--now"], ["systemctl", "restart"],
                  ["systemctl", "disable", "--now"])
    return runner


def run(runner, strategies, check_mode=False, remove_others=True):
    return _schedule.run(runner, {"strategies": strategies, "remove_others": remove_others}, check_mode)


def changes(runner):
    """The commands that change something (not the reads)."""
    return [c for c in runner.calls if c[:2] not in (["systemctl", "show"], ["systemd-analyze", "calendar"])]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_check_mode_plans_every_file_and_the_timer_and_changes_nothing(etc):
    runner = runner_for({"lockbox-backup-ledger-hourly.timer": MISSING})
    result = run(runner, [LEDGER], check_mode=True)
    assert result["changed"]
    assert [a["action"] for a in result["actions"]] == ["directory", "write", "write", "write", "daemon-reload",
                                                        "start"]
    assert runner.calls == [["systemd-analyze", "calendar", "--", "hourly"],
                            ["systemctl", "show", "lockbox-backup-ledger-hourly.timer", *SHOW]]
    assert not (etc / "backup").exists() and os.listdir(etc / "systemd") == []


def test_install_writes_root_only_strategy_the_units_and_starts_the_timer(etc):
    runner = runner_for({"lockbox-backup-ledger-hourly.timer": MISSING})
    result = run(runner, [LEDGER])
    assert result["changed"] and result["strategies"] == ["ledger-hourly"] and result["removed"] == []
    assert changes(runner) == [["systemctl", "daemon-reload"],
                               ["systemctl", "enable", "--now", "lockbox-backup-ledger-hourly.timer"]]
    assert mode(etc / "backup") == 0o700 and mode(etc / "backup" / "ledger-hourly.json") == 0o600
    assert json.loads((etc / "backup" / "ledger-hourly.json").read_text()) == dict(LEDGER, mode="hot")
    timer = (etc / "systemd" / "lockbox-backup-ledger-hourly.timer").read_text()
    assert "\n[Timer]\nOnCalendar=hourly\nPersistent=true\nUnit=lockbox-backup@ledger-hourly.service\n" in timer
    assert "ExecStart=/usr/local/bin/renet backup run %i\n" in (etc / "systemd" / "lockbox-backup@.service").read_text()
    assert mode(etc / "systemd" / "lockbox-backup-ledger-hourly.timer") == 0o644


def test_a_repeat_is_unchanged_and_only_reads(etc):
    run(runner_for({"lockbox-backup-ledger-hourly.timer": MISSING}), [LEDGER])
    runner = runner_for({"lockbox-backup-ledger-hourly.timer": RUNNING})
    assert run(runner, [LEDGER]) == {"changed": False, "actions": [], "strategies": ["ledger-hourly"], "removed": []}
    assert changes(runner) == []


def test_a_running_timer_whose_schedule_changed_is_restarted(etc):
    run(runner_for({"lockbox-backup-ledger-hourly.timer": MISSING}), [LEDGER])
    runner = runner_for({"lockbox-backup-ledger-hourly.timer": RUNNING}, schedules=("daily",))
    result = run(runner, [dict(LEDGER, schedule="daily")])
    assert [a["detail"] for a in result["actions"]][-2:] == [
        "systemctl daemon-reload", "restart lockbox-backup-ledger-hourly.timer (its schedule changed)"]
    assert changes(runner) == [["systemctl", "daemon-reload"],
                               ["systemctl", "restart", "lockbox-backup-ledger-hourly.timer"]]
    assert "OnCalendar=daily\n" in (etc / "systemd" / "lockbox-backup-ledger-hourly.timer").read_text()


def test_a_file_changed_by_hand_is_written_back(etc):
    run(runner_for({"lockbox-backup-ledger-hourly.timer": MISSING}), [LEDGER])
    (etc / "backup" / "ledger-hourly.json").chmod(0o644)
    runner = runner_for({"lockbox-backup-ledger-hourly.timer": RUNNING})
    assert [a["detail"] for a in run(runner, [LEDGER])["actions"]] == [
        "write %s" % (etc / "backup" / "ledger-hourly.json")]
    assert mode(etc / "backup" / "ledger-hourly.json") == 0o600


def test_strategies_no_longer_listed_are_stopped_and_removed_unless_told_otherwise(etc):
    run(runner_for({"lockbox-backup-ledger-hourly.timer": MISSING, "lockbox-backup-old.timer": MISSING}),
        [LEDGER, dict(LEDGER, name="old")])
    timers = {"lockbox-backup-ledger-hourly.timer": RUNNING, "lockbox-backup-old.timer": RUNNING}
    kept = runner_for(timers)
    assert not run(kept, [LEDGER], remove_others=False)["changed"]
    runner = runner_for(timers)
    result = run(runner, [LEDGER])
    assert result["removed"] == ["old"]
    assert changes(runner) == [["systemctl", "disable", "--now", "lockbox-backup-old.timer"],
                               ["systemctl", "daemon-reload"]]
    assert sorted(os.listdir(etc / "backup")) == ["ledger-hourly.json"]
    assert not (etc / "systemd" / "lockbox-backup-old.timer").exists()


def test_one_bad_strategy_changes_nothing_and_runs_no_systemctl(etc):
    runner = runner_for({}, schedules=("hourly", "Mon..Fry 25:00"))
    runner.answer(["systemd-analyze", "calendar", "--", "Mon..Fry 25:00"], rc=1)
    with pytest.raises(InvalidInput, match="is not a systemd calendar expression"):
        run(runner, [LEDGER, dict(LEDGER, name="bad", schedule="Mon..Fry 25:00")])
    for bad, says in ((dict(LEDGER, name="../../tmp/evil"), "backup strategy name"),
                      (dict(LEDGER, schedule="hourly\nExecStartPre=/bin/id"), "is not a systemd calendar"),
                      ([LEDGER], "is a mapping")):
        with pytest.raises(InvalidInput, match=says):
            run(runner, [bad])
    assert [c[0] for c in runner.calls] == ["systemd-analyze"] * 2
    assert not (etc / "backup").exists() and os.listdir(etc / "systemd") == []


def test_a_failed_step_puts_the_files_back(etc):
    runner = runner_for({"lockbox-backup-ledger-hourly.timer": MISSING})
    runner.answer(["systemctl", "enable", "--now"], rc=1)
    with pytest.raises(LockboxError, match=r"rolled back: .*lockbox-backup-ledger-hourly\.timer"):
        run(runner, [LEDGER])
    assert os.listdir(etc / "systemd") == [] and os.listdir(etc / "backup") == []
    assert changes(runner)[-1] == ["systemctl", "daemon-reload"]
