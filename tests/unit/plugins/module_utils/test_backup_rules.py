# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup rules: strategies checked in full, backup names, `at` resolved to a backup."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import backup as _rules

GOOD = {"name": "nightly", "repositories": ["shop", "shop:staging"], "schedule": "*-*-* 02:00:00",
        "retention": {"daily": 7, "weekly": 4}}


def test_a_good_strategy_gets_the_hot_default():
    assert _rules.check_strategy(GOOD, _state.check_name)["mode"] == "hot"
    for schedule in ("hourly", "Mon..Fri *-*-* 02:00:00", "*:0/15", "2026-11-25 10:00:00 UTC"):
        _rules.check_schedule(schedule)


@pytest.mark.parametrize("change, says", [
    ({"name": "../x"}, "strategy name"), ({"name": "Nightly"}, "strategy name"), ({"name": "a\n"}, "strategy name"),
    ({"name": "x" * 33}, "strategy name"), ({"repositories": []}, "non-empty list"),
    ({"repositories": "shop"}, "non-empty list"), ({"repositories": ["shop", "shop"]}, "twice"),
    ({"repositories": ["../etc"]}, "name"), ({"mode": "warm"}, "backup mode"),
    ({"schedule": "hourly\nExecStartPre=/bin/id"}, "calendar"), ({"schedule": "%n"}, "calendar"),
    ({"schedule": "$(id)"}, "calendar"), ({"schedule": ""}, "calendar"), ({"schedule": " "}, "calendar"),
    ({"schedule": "x" * 101}, "calendar"), ({"schedule": 5}, "calendar"),
    ({"retention": {}}, "retention"), ({"retention": {"yearly": 1}}, "unknown retention"),
    ({"retention": {"last": 0}}, "keeps nothing"), ({"extra": 1}, "unknown backup strategy key"),
    ({"copy_to": "server-2"}, "copy_to is a mapping"), ({"copy_to": {"port": 22}}, "copy_to lacks address"),
    ({"copy_to": {"address": "b", "user": "x"}}, "unknown copy_to key"),
])
def test_a_bad_strategy_is_refused_naming_what_is_wrong(change, says):
    with pytest.raises(InvalidInput, match=says):
        _rules.check_strategy(dict(GOOD, **change), _state.check_name)


def test_copy_to_gets_port_22_by_default():
    assert _rules.check_strategy(dict(GOOD, copy_to={"address": "10.0.2.2"}), _state.check_name)["copy_to"] == \
        {"address": "10.0.2.2", "port": 22}


def test_a_strategy_lacking_a_key_or_not_a_mapping_is_refused():
    with pytest.raises(InvalidInput, match="lacks schedule"):
        _rules.check_strategy({k: v for k, v in GOOD.items() if k != "schedule"}, _state.check_name)
    with pytest.raises(InvalidInput, match="is a mapping"):
        _rules.check_strategy(["nightly"], _state.check_name)


NAMES = ["20261123T230000Z-dddddd", "20261124T090000Z-cccccc", "20261125T131500Z-bbbbbb", "20261125T133000Z-aaaaaa"]


@pytest.mark.parametrize("at, chosen", [
    (None, "20261125T133000Z-aaaaaa"), ("20261124T090000Z-cccccc", "20261124T090000Z-cccccc"),
    ("2026-11-24", "20261124T090000Z-cccccc"), ("20261125T132000Z", "20261125T131500Z-bbbbbb"),
    ("2026-11-25T13:15:00Z", "20261125T131500Z-bbbbbb"), ("2026-11-25T14:15:00+01:00", "20261125T131500Z-bbbbbb"),
])
def test_at_names_a_backup_or_the_newest_at_or_before_a_time(at, chosen):
    assert _rules.pick(NAMES, at) == chosen


@pytest.mark.parametrize("at, says", [
    ("2026-11-22", "no backup was taken at or before"), ("20261125T133000Z-ffffff", "there is no backup"),
    ("yesterday", "is neither a backup name"), ("../../etc", "neither"), (5, "neither"),
    ("20261125T133000Z-aaaaaa\n", "neither"),
])
def test_a_bad_at_is_refused(at, says):
    with pytest.raises(InvalidInput, match=says):
        _rules.pick(NAMES, at)


def test_backup_names_are_matched_in_full():
    assert _rules.backup_time("20261125T133000Z-aaaaaa").hour == 13
    for name in ("20261125T133000Z-aaaaaa\n", "x20261125T133000Z-aaaaaa", "20261125T133000Z-AAAAAA",
                 "20261125T133000Z-aaaaaa.sha256", "20261399T133000Z-aaaaaa"):
        assert _rules.backup_time(name) is None
    with pytest.raises(InvalidInput, match="no backup to choose from"):
        _rules.pick(["not-a-backup"])
