# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's backup strategies as files and systemd timers (lockbox.fleet.backup_schedule).

One module run writes every strategy file, the service and the timers, starts the timers and
removes those of strategies no longer listed: the role made a dozen module runs of it, seconds
each on a busy host.
"""

from __future__ import annotations

import json
import os
import re
import stat

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, remove_file, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_backup as _backup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

SERVICE = "lockbox-backup@.service"
_TIMER = re.compile(r"lockbox-backup-(?P<name>.+)\.timer")
_STRATEGY_FILE = re.compile(r"(?P<name>[^.].*)\.json")
_HEADER = "# Written by lockbox.fleet.backup_schedule: changes made here are overwritten.\n"


def timer_unit(name):
    return "lockbox-backup-%s.timer" % name


def strategy_path(name):
    return os.path.join(_backup.STRATEGY_DIR, name + ".json")


def strategy_text(strategy):
    return json.dumps(strategy, indent=4, sort_keys=True) + "\n"


def service_text():
    return _HEADER + "\n".join([
        "[Unit]", "Description=lockbox backup strategy %i (renet backup run)", "After=local-fs.target", "",
        "[Service]", "Type=oneshot", "ExecStart=/usr/local/bin/renet backup run %i", ""])


def timer_text(strategy):
    # Name and schedule are checked (a-z0-9_-; systemd's calendar characters, one line), so
    # neither can add a line or a %-specifier to the unit.
    name = strategy["name"]
    return _HEADER + "\n".join([
        "[Unit]", "Description=lockbox backup strategy %s" % name, "",
        "[Timer]", "OnCalendar=%s" % strategy["schedule"], "Persistent=true",
        "Unit=lockbox-backup@%s.service" % name, "",
        "[Install]", "WantedBy=timers.target", ""])


def _names_in(directory, pattern):
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return set()
    return {m.group("name") for m in map(pattern.fullmatch, entries) if m}


def _mode_of(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid)


def _file_step(step, what):
    """A step on a file whose OSError is reported as this module's error (and rolled back)."""
    def apply():
        try:
            step()
        except OSError as exc:
            raise LockboxError("cannot %s: %s" % (what, exc.strerror or exc)) from None
    return apply


def _write(path, content, mode):
    return _file_step(lambda: write_atomic(path, content, mode=mode), "write %s" % path)


def _remove(path):
    return _file_step(lambda: remove_file(path), "remove %s" % path)


def _make_directory(path):
    def make():
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chown(path, 0, 0)
        os.chmod(path, 0o700)
    return _file_step(make, "make %s" % path)


def observe(runner, names, remove_others):
    """The files as they are, and the state of each timer involved (wanted and stale)."""
    directory = _backup.STRATEGY_DIR
    found = _names_in(_systemd.UNIT_DIR, _TIMER) | _names_in(directory, _STRATEGY_FILE)
    stale = sorted(found - set(names)) if remove_others else []
    return {
        "directory": _mode_of(directory),
        "stale": stale,
        "timers": {name: _systemd.unit_status(runner, timer_unit(name)) for name in [*names, *stale]},
    }


def plan(runner, strategies, seen):
    """The steps from what is to what ``strategies`` want (none when they match), and the files they touch."""
    directory = _backup.STRATEGY_DIR
    actions, touched = [], []
    if seen["directory"] != (stat.S_IFDIR, 0o700, 0):
        actions.append(Action("directory", "make %s root-only (0700)" % directory, _make_directory(directory)))
    for name in seen["stale"]:
        unit = timer_unit(name)
        timer = seen["timers"][name]
        if timer["active"] or timer["enabled"]:
            actions.append(Action("stop", "stop and disable %s (strategy no longer listed)" % unit,
                                  lambda unit=unit: _systemd.systemctl(runner, "disable", "--now", unit)))
        for path in (os.path.join(_systemd.UNIT_DIR, unit), strategy_path(name)):
            if os.path.lexists(path):
                actions.append(Action("remove", "remove %s" % path, _remove(path)))
                touched.append(path)
    wanted = {strategy_path(s["name"]): (strategy_text(s), 0o600) for s in strategies}
    wanted[os.path.join(_systemd.UNIT_DIR, SERVICE)] = (service_text(), 0o644)
    wanted.update({os.path.join(_systemd.UNIT_DIR, timer_unit(s["name"])): (timer_text(s), 0o644)
                   for s in strategies})
    written = [p for p, (content, mode) in wanted.items()
               if read_text(p) != content or _mode_of(p) != (stat.S_IFREG, mode, 0)]
    actions += [Action("write", "write %s" % p, _write(p, *wanted[p])) for p in written]
    touched += written
    if any(os.path.dirname(p) == _systemd.UNIT_DIR for p in touched):
        actions.append(Action("daemon-reload", "systemctl daemon-reload",
                              lambda: _systemd.systemctl(runner, "daemon-reload")))
    for strategy in strategies:
        unit = timer_unit(strategy["name"])
        timer = seen["timers"][strategy["name"]]
        if not (timer["enabled"] and timer["active"]):
            actions.append(Action("start", "enable and start %s" % unit,
                                  lambda unit=unit: _systemd.systemctl(runner, "enable", "--now", unit)))
        elif os.path.join(_systemd.UNIT_DIR, unit) in written:
            # A running timer keeps its old schedule until it is restarted.
            actions.append(Action("restart", "restart %s (its schedule changed)" % unit,
                                  lambda unit=unit: _systemd.systemctl(runner, "restart", unit)))
    return actions, touched


def _snapshot(paths):
    return {p: (read_text(p), _mode_of(p)) for p in paths}


def _roll_back(runner, before, exc):
    """Put the files back as they were before a failed step, reload, and say so in the error."""
    undone = []
    try:
        for path, (content, mode) in before.items():
            if (read_text(path), _mode_of(path)) == (content, mode):
                continue
            if content is None:
                remove_file(path)
            else:
                write_atomic(path, content, mode=mode[1])
            undone.append(path)
        _systemd.systemctl(runner, "daemon-reload")
    except (LockboxError, OSError) as again:
        exc.msg += "; rolling back failed too: %s" % getattr(again, "msg", again)
    else:
        exc.msg += "; rolled back: %s" % (", ".join(undone) if undone else "nothing had been written")
    exc.args = (exc.msg,)


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.backup_schedule."""
    # Every strategy is checked, schedules by systemd-analyze too, before anything is written.
    checked = _backup.check_strategies(runner, params["strategies"])
    names = [s["name"] for s in checked]
    seen = observe(runner, names, params.get("remove_others", True))
    actions, touched = plan(runner, checked, seen)
    before = _snapshot(touched)
    try:
        reports = apply_plan(actions, check_mode)
    except LockboxError as exc:
        _roll_back(runner, before, exc)
        raise
    return {"changed": bool(actions), "actions": reports, "strategies": names, "removed": seen["stale"]}
