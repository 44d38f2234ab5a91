# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backups of repositories: pure rules, no host state.

A backup is a read-only BTRFS snapshot of a repository's subvolume (its encrypted image) named
``<UTC stamp>-<6 hex>`` like a transfer snapshot. A strategy names the repositories, the mode
(``hot``: crash-consistent, the filesystem frozen for the instant; ``cold``: the services brought
down for the snapshot), when it runs (a systemd calendar expression) and what it keeps (a
retention policy, ``_rules.retention``).
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import retention as _retention
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import transfer as _transfer

MODES = ("hot", "cold")
STRATEGY_KEYS = ("name", "repositories", "mode", "schedule", "retention", "datastore", "copy_to")
# Where a strategy also copies each repository after its backup (another fleet host's SSH
# address, as the backup role resolved it from the inventory).
COPY_TO_KEYS = ("address", "port")
STRATEGY_REQUIRED = ("name", "repositories", "schedule", "retention")
_STRATEGY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# What systemd calendar expressions are made of ("Mon..Fri *-*-* 02:00:00", "hourly",
# "*:0/15"); systemd-analyze calendar then checks the expression itself. No newline, quote,
# "%" or "$" can reach the unit file.
_CALENDAR = re.compile(r"[A-Za-z0-9 :*/,.~+-]{1,100}")
_TIME_FORMATS = ("%Y%m%dT%H%M%SZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z",
                 "%Y-%m-%dT%H:%MZ", "%Y-%m-%d")


def backup_time(name):
    """The UTC time of backup ``name`` (``<stamp>-<6 hex>``), or None when it is not a backup name."""
    try:
        _transfer.check_snapshot_name(name)
    except InvalidInput:
        return None
    return _retention.parse_stamp(name.split("-", 1)[0])


def check_mode(mode):
    if mode not in MODES:
        raise InvalidInput("backup mode %r: one of %s" % (mode, ", ".join(MODES)))
    return mode


def check_schedule(schedule):
    if not isinstance(schedule, str) or not _CALENDAR.fullmatch(schedule) or not schedule.strip():
        raise InvalidInput("schedule %r is not a systemd calendar expression (letters, digits, spaces and "
                           "':*/,.~+-', at most 100)" % (schedule,))
    return schedule


def check_strategy_name(name):
    if not isinstance(name, str) or not _STRATEGY_NAME.fullmatch(name):
        raise InvalidInput("backup strategy name %r: 1-32 of a-z 0-9 _ -, starting with a letter or digit" % (name,))
    return name


def check_strategy(strategy, check_name):
    """``strategy`` checked in full; ``check_name`` checks one repository name. Returns it with defaults."""
    if not isinstance(strategy, dict):
        raise InvalidInput("a backup strategy is a mapping, got %s" % type(strategy).__name__)
    unknown = sorted(str(k) for k in strategy if k not in STRATEGY_KEYS)
    if unknown:
        raise InvalidInput("unknown backup strategy key(s) %s (known: %s)" % (", ".join(unknown),
                                                                              ", ".join(STRATEGY_KEYS)))
    missing = [k for k in STRATEGY_REQUIRED if k not in strategy]
    if missing:
        raise InvalidInput("backup strategy %r lacks %s" % (strategy.get("name"), ", ".join(missing)))
    name = check_strategy_name(strategy["name"])
    repositories = strategy["repositories"]
    if not isinstance(repositories, list) or not repositories:
        raise InvalidInput("backup strategy %s: repositories is a non-empty list of names" % name)
    for repository in repositories:
        check_name(repository)
    if len(set(repositories)) != len(repositories):
        raise InvalidInput("backup strategy %s names a repository twice" % name)
    checked = dict(strategy, mode=check_mode(strategy.get("mode", "hot")),
                   schedule=check_schedule(strategy["schedule"]))
    if strategy.get("copy_to") is not None:
        checked["copy_to"] = check_copy_to(name, strategy["copy_to"])
    _retention.check_policy(strategy["retention"])
    return checked


def check_copy_to(name, copy_to):
    """A strategy's ``copy_to`` in shape: {address, port}; the address itself is checked where it is used."""
    if not isinstance(copy_to, dict):
        raise InvalidInput("backup strategy %s: copy_to is a mapping {address, port}, got %s"
                           % (name, type(copy_to).__name__))
    unknown = sorted(str(k) for k in copy_to if k not in COPY_TO_KEYS)
    if unknown:
        raise InvalidInput("backup strategy %s: unknown copy_to key(s) %s (known: %s)"
                           % (name, ", ".join(unknown), ", ".join(COPY_TO_KEYS)))
    if "address" not in copy_to:
        raise InvalidInput("backup strategy %s: copy_to lacks address" % name)
    return {"address": copy_to["address"], "port": copy_to.get("port", 22)}


def parse_at(text):
    """A time given as ``at`` (``20261125T103000Z``, ISO 8601 with a zone, or a date), as an aware UTC time."""
    if not isinstance(text, str):
        raise InvalidInput("at=%r is neither a backup name nor a time" % (text,))
    for form in _TIME_FORMATS:
        try:
            moment = datetime.datetime.strptime(text, form)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        if form == "%Y-%m-%d":
            moment += datetime.timedelta(days=1, microseconds=-1)  # a date: the end of that day
        return moment.astimezone(datetime.timezone.utc)
    raise InvalidInput("at=%r is neither a backup name (<UTC stamp>-<6 hex>) nor a time "
                       "(20261125T103000Z, 2026-11-25T10:30:00Z, 2026-11-25)" % (text,))


def pick(names, at=None):
    """The backup ``at`` names: that backup, or the newest taken at or before that time; the newest
    of all without ``at``."""
    timed = {n: backup_time(n) for n in names}
    timed = {n: t for n, t in timed.items() if t is not None}
    if not timed:
        raise InvalidInput("there is no backup to choose from")
    if at is None:
        return max(timed, key=lambda n: (timed[n], n))
    if at in timed:
        return at
    if backup_time(at) is not None:
        raise InvalidInput("there is no backup %s (there are: %s)" % (at, ", ".join(sorted(timed))))
    moment = parse_at(at)
    earlier = [n for n, t in timed.items() if t <= moment]
    if not earlier:
        raise InvalidInput("no backup was taken at or before %s (the oldest is %s)" % (at, min(timed)))
    return max(earlier, key=lambda n: (timed[n], n))
