# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup retention: exactly which backups a policy keeps, and policies refused."""

import datetime

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import retention as _retention

UTC = datetime.timezone.utc


def _hours(*stamps):
    return {s: _retention.parse_stamp(s) for s in stamps}


def test_each_period_keeps_the_newest_backup_of_its_newest_periods():
    backups = _hours("20261125T100000Z", "20261125T093000Z", "20261125T090000Z",
                     "20261124T230000Z", "20261124T120000Z", "20261123T120000Z", "20261116T120000Z",
                     "20261031T000000Z")
    kept, expired = _retention.plan(backups, {"hourly": 2, "daily": 3, "weekly": 2, "monthly": 2})
    assert kept == {"20261125T100000Z": ["hourly", "daily", "weekly", "monthly"],
                    "20261125T093000Z": ["hourly"],  # the 09:00 hour's newest is 09:30
                    "20261124T230000Z": ["daily"],
                    "20261123T120000Z": ["daily"],  # Monday 23rd is in the 25th's ISO week (48)
                    "20261116T120000Z": ["weekly"],  # week 47's newest
                    "20261031T000000Z": ["monthly"]}
    assert expired == ["20261125T090000Z", "20261124T120000Z"]


def test_last_keeps_the_newest_whatever_their_periods():
    backups = _hours("20261125T100000Z", "20261125T100100Z", "20261125T100200Z", "20261125T100300Z")
    kept, expired = _retention.plan(backups, {"last": 2})
    assert list(kept) == ["20261125T100300Z", "20261125T100200Z"]
    assert expired == ["20261125T100100Z", "20261125T100000Z"]


def test_the_answer_depends_on_the_backups_only_and_never_drops_the_newest():
    backups = _hours("20261125T100000Z", "20261120T100000Z", "20261001T100000Z")
    first = _retention.plan(backups, {"daily": 1})
    assert first == ({"20261125T100000Z": ["daily"]}, ["20261120T100000Z", "20261001T100000Z"])
    # The same backups, in another order and with local times: the same answer.
    shuffled = {n: t.astimezone(datetime.timezone(datetime.timedelta(hours=-7))) for n, t in
                reversed(list(backups.items()))}
    assert _retention.plan(shuffled, {"daily": 1}) == first
    assert _retention.plan({}, {"daily": 1}) == ({}, [])


@pytest.mark.parametrize("policy, message", [
    ({}, "names at least one"),
    ({"yearly": 1}, "unknown retention rule"),
    ({"daily": -1}, "whole number"),
    ({"daily": 1.5}, "whole number"),
    ({"daily": True}, "whole number"),
    ({"daily": "3"}, "whole number"),
    ({"daily": 0, "last": 0}, "keeps nothing"),
    ("daily=3", "names at least one"),
])
def test_policies_that_mean_something_else_are_refused(policy, message):
    with pytest.raises(InvalidInput, match=message):
        _retention.plan(_hours("20261125T100000Z"), policy)


def test_stamps_are_utc_and_anything_else_is_no_backup():
    moment = datetime.datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    assert _retention.stamp(moment) == "20261125T103000Z"
    assert _retention.parse_stamp("20261125T103000Z") == moment
    for text in ("20261125T103000", "2026-11-25T10:30:00Z", "../20261125T103000Z", "", None):
        assert _retention.parse_stamp(text) is None
