# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which backups a retention policy keeps: pure rules, no host state.

A policy keeps the newest ``last`` backups, and for each period (hourly, daily, weekly, monthly)
the newest backup of each of the ``N`` most recent periods that have one. A backup is kept when
any rule keeps it; the rest expire. Periods are UTC calendar hours, days, ISO weeks and months,
so the answer depends only on the backups' times, never on when the question is asked: a prune
run twice, or on another host, removes the same backups.
"""

from __future__ import annotations

import datetime

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput

PERIODS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
}
RULES = ("last", *PERIODS)
MAX_COUNT = 10000
STAMP = "%Y%m%dT%H%M%SZ"


def check_policy(policy):
    """``policy`` ({rule: count}) checked: known rules, whole counts 0..MAX_COUNT, at least one kept."""
    if not isinstance(policy, dict) or not policy:
        raise InvalidInput("a retention policy names at least one of %s with a count" % ", ".join(RULES))
    unknown = sorted(str(k) for k in policy if k not in RULES)
    if unknown:
        raise InvalidInput("unknown retention rule(s) %s (known: %s)" % (", ".join(unknown), ", ".join(RULES)))
    for rule, count in policy.items():
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise InvalidInput("retention %s=%r: a whole number from 0 to %d" % (rule, count, MAX_COUNT))
    if not any(policy.values()):
        raise InvalidInput("a retention policy that keeps nothing would remove every backup: keep at least one")
    return {rule: policy.get(rule, 0) for rule in RULES}


def parse_stamp(text):
    """The UTC time of a backup's stamp (``20261125T103000Z``), or None when it is not one."""
    try:
        return datetime.datetime.strptime(text, STAMP).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def stamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime(STAMP)


def plan(backups, policy):
    """(kept, expired) names of ``backups`` ({name: aware datetime}) under ``policy``, newest first;
    ``kept`` maps each kept name to the rules that keep it."""
    policy = check_policy(policy)
    newest_first = sorted(backups, key=lambda name: (backups[name], name), reverse=True)
    kept = {}
    for name in newest_first[:policy["last"]]:
        kept.setdefault(name, []).append("last")
    for rule, period_of in PERIODS.items():
        seen = []
        for name in newest_first:
            if len(seen) >= policy[rule]:
                break
            period = period_of(backups[name].astimezone(datetime.timezone.utc))
            if period not in seen:
                seen.append(period)
                kept.setdefault(name, []).append(rule)
    expired = [name for name in newest_first if name not in kept]
    return {name: kept[name] for name in newest_first if name in kept}, expired
