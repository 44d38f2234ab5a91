# SPDX-License-Identifier: GPL-3.0-or-later
"""Moving repositories between hosts: the common base, bandwidth limits, progress."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import transfer as _transfer

LOCAL = [{"name": "20261125T090000Z", "uuid": "u-9", "time": 9},
         {"name": "20261125T100000Z", "uuid": "u-10", "time": 10},
         {"name": "20261125T110000Z", "uuid": "u-11", "time": 11}]


def test_the_newest_snapshot_the_target_received_is_the_base():
    remote = [{"received_uuid": "u-9"}, {"received_uuid": "u-10"}, {"received_uuid": None}]
    assert _transfer.common_base(LOCAL, remote)["name"] == "20261125T100000Z"


def test_without_a_shared_snapshot_the_copy_goes_whole():
    assert _transfer.common_base(LOCAL, []) is None
    assert _transfer.common_base(LOCAL, [{"received_uuid": "u-other"}, {}]) is None
    assert _transfer.common_base(LOCAL, [{"uuid": "u-other", "received_uuid": None}]) is None
    assert _transfer.common_base([], [{"received_uuid": "u-10"}]) is None


def test_a_snapshot_received_here_is_the_base_of_a_copy_back():
    # Host a received r-1 from b (b's snapshot u-b1): a copy back to b names it by u-b1, which b holds.
    local = [{"name": "20261125T120000Z-aaaaaa", "uuid": "r-1", "received_uuid": "u-b1", "time": 12}]
    assert _transfer.common_base(local, [{"uuid": "u-b1", "received_uuid": None}])["name"] == local[0]["name"]
    # ...but not by its own uuid, which no other host knows.
    assert _transfer.common_base(local, [{"uuid": "r-1-elsewhere", "received_uuid": "r-1x"}]) is None
    assert _transfer.identity(local[0]) == "u-b1"
    assert _transfer.identity(LOCAL[0]) == "u-9"


def test_snapshot_names_sort_by_time_and_refuse_anything_else():
    import datetime
    moment = datetime.datetime(2026, 11, 25, 13, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert _transfer.snapshot_name(moment, "0a1b2c") == "20261125T110005Z-0a1b2c"
    assert _transfer.check_snapshot_name("20261125T110005Z-0a1b2c")
    for bad in ("../x", "20261125T110005Z", "20261125T110005Z-0A1B2C", "x20261125T110005Z-0a1b2c", "", None, 5,
                "20261125T110005Z-0a1b2c/..", "20261125T110005Z-0a1b2c\n"):
        with pytest.raises(InvalidInput, match="not a transfer snapshot name"):
            _transfer.check_snapshot_name(bad)
    with pytest.raises(InvalidInput, match="6 lowercase hex"):
        _transfer.snapshot_name(moment, "zzzzzz")


@pytest.mark.parametrize("guid", ["../../etc", "AB606F8B-83E3-410B-BA96-A5089DB7C4ED", "", None,
                                  "ab606f8b-83e3-410b-ba96-a5089db7c4ed/x", "ab606f8b83e3410bba96a5089db7c4ed"])
def test_guids_are_checked(guid):
    with pytest.raises(InvalidInput, match="not a repository GUID"):
        _transfer.check_guid(guid)
    assert _transfer.check_guid("ab606f8b-83e3-410b-ba96-a5089db7c4ed")


@pytest.mark.parametrize("value, rate", [("10M", 10 << 20), ("1.5G", 3 << 29), ("64KiB", 65536), (1 << 20, 1 << 20),
                                         (None, None), ("", None), ("0", None), (0, None)])
def test_bandwidth_limits(value, rate):
    assert _transfer.parse_bandwidth(value) == rate


@pytest.mark.parametrize("value, message", [("10K", "at least 64 KiB/s"), ("fast", "is not a size"),
                                            ("-5M", "is not a size"), (True, "not a boolean")])
def test_bandwidth_limits_that_mean_something_else(value, message):
    with pytest.raises(InvalidInput, match=message):
        _transfer.parse_bandwidth(value)


def test_progress_says_rate_and_time_left():
    report = _transfer.progress(3 << 29, 1 << 31, 30.0)
    assert report == {"sent": 3 << 29, "total": 1 << 31, "rate": 53687091, "percent": 75.0, "eta_seconds": 10}
    assert _transfer.progress_line("devbox", report) == "devbox: 1.5 GiB of 2 GiB (75.0 %), 51.2 MiB/s, 10 s left"
    unknown = _transfer.progress(1 << 20, None, 0.0)
    assert unknown == {"sent": 1 << 20, "total": None, "rate": 0, "percent": None, "eta_seconds": None}
    assert _transfer.progress_line("devbox", unknown) == "devbox: 1 MiB, 0 B/s"
    # A stream longer than its estimate never shows more than 100 % or a negative time.
    over = _transfer.progress(3 << 30, 1 << 31, 10.0)
    assert over["percent"] == 100.0 and over["eta_seconds"] == 0
