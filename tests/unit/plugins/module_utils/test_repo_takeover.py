# SPDX-License-Identifier: GPL-3.0-or-later
"""repo_takeover: the plan, the grand's identity kept, and the rollback of a failed step."""

import datetime
import json

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_takeover as _takeover
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs

from ...conftest import FakeRunner, fixture_text

GRAND = {"name": "shop", "guid": "11111111-1111-4111-8111-111111111111", "network_id": 2816, "subnet": "127.0.11.0/26",
         "size": 67108864, "key_kind": "key", "status": "ready", "is_fork": False, "parent_guid": None}
FORK = dict(GRAND, name="shop:staging", guid="22222222-2222-4222-8222-222222222222", network_id=2880,
            is_fork=True, parent="shop", parent_guid=GRAND["guid"], tag="staging")
NOW = datetime.datetime(2026, 11, 25, 14, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def host(tmp_path, monkeypatch):
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    monkeypatch.setattr(_repository.Layout, "check_datastore", lambda self: None)
    (tmp_path / "state" / "repos").mkdir(parents=True)
    for record in (GRAND, FORK):
        (tmp_path / "state" / "repos" / ("%s.json" % record["name"])).write_text(json.dumps(record))
        (tmp_path / "ds" / "repositories" / record["guid"]).mkdir(parents=True)
        (tmp_path / "ds" / "repositories" / record["guid"] / "data").write_text(record["name"])
    monkeypatch.setattr(_btrfs, "is_subvolume", lambda path: (tmp_path / path).is_dir())
    monkeypatch.setattr(_takeover.os, "sync", lambda: None)
    return layout, tmp_path


def record(tmp_path, name):
    path = tmp_path / "state" / "repos" / ("%s.json" % name)
    return json.loads(path.read_text()) if path.exists() else None


def test_the_fork_s_data_takes_over_and_the_old_data_becomes_a_backup_fork(host):
    layout, tmp_path = host
    runner = FakeRunner()
    runner.silent(["btrfs", "subvolume", "snapshot"], ["cryptsetup", "luksUUID"])
    runner.answer(["btrfs", "subvolume", "show"], fixture_text("btrfs_subvolume_show_sent.txt"))
    result = _takeover.takeover(runner, layout, "shop:staging", now=NOW)
    backup = record(tmp_path, "shop:takeover-20261125T140000Z")
    assert [a["action"] for a in result["actions"]] == ["record", "keep-old-data", "backup-luks-uuid", "take-data",
                                                        "grand-luks-uuid", "ready"]
    assert result["backup"] == "shop:takeover-20261125T140000Z" and result["backup_guid"] == backup["guid"]
    assert backup["parent_guid"] == GRAND["guid"] and backup["is_fork"] and backup["status"] == "ready"
    assert backup["guid"] not in (GRAND["guid"], FORK["guid"]) and backup["network_id"] not in (2816, 2880)
    grand = record(tmp_path, "shop")
    identity = ("guid", "network_id", "subnet")
    assert {k: grand[k] for k in identity} == {k: GRAND[k] for k in identity}
    assert grand["taken_over_from"] == "shop:staging" and grand["taken_over_generation"] == 10
    # The grand's old data moved (a rename) to the backup's subvolume.
    assert (tmp_path / "ds" / "repositories" / backup["guid"] / "data").read_text() == "shop"
    assert runner.calls == [
        ["cryptsetup", "luksUUID", "--batch-mode", "--uuid", backup["guid"], layout.image(backup["guid"])],
        ["btrfs", "subvolume", "snapshot", layout.subvolume(FORK["guid"]), layout.subvolume(GRAND["guid"])],
        ["cryptsetup", "luksUUID", "--batch-mode", "--uuid", GRAND["guid"], layout.image(GRAND["guid"])],
        ["btrfs", "subvolume", "show", layout.subvolume(GRAND["guid"])]]


def test_a_failed_step_puts_the_grand_s_own_data_back(host):
    layout, tmp_path = host
    runner = FakeRunner()
    runner.silent(["cryptsetup", "luksUUID"])
    runner.answer(["btrfs", "subvolume", "snapshot"], rc=1)
    with pytest.raises(LockboxError, match="rolled back: shop has its own data again"):
        _takeover.takeover(runner, layout, "shop:staging", now=NOW)
    assert (tmp_path / "ds" / "repositories" / GRAND["guid"] / "data").read_text() == "shop"
    assert record(tmp_path, "shop:takeover-20261125T140000Z") is None
    assert "taken_over_from" not in record(tmp_path, "shop")
    assert runner.calls[-1] == ["cryptsetup", "luksUUID", "--batch-mode", "--uuid", GRAND["guid"],
                                layout.image(GRAND["guid"])]


def test_check_mode_plans_and_changes_nothing(host):
    layout, tmp_path = host
    result = _takeover.takeover(FakeRunner(), layout, "shop:staging", check_mode=True, now=NOW)
    assert result["changed"] and len(result["actions"]) == 6
    assert record(tmp_path, "shop:takeover-20261125T140000Z") is None
    assert sorted(p.name for p in (tmp_path / "ds" / "repositories").iterdir()) == sorted([GRAND["guid"], FORK["guid"]])


def test_only_a_fork_takes_over_and_never_into_an_open_grand(host, monkeypatch):
    layout, _tmp_path = host
    with pytest.raises(InvalidInput, match="shop is not a fork"):
        _takeover.takeover(FakeRunner(), layout, "shop", now=NOW)
    monkeypatch.setattr(_repository.os.path, "exists", lambda path: path == layout.mapper_device(GRAND["guid"]))
    runner = FakeRunner()
    with pytest.raises(InvalidInput, match="shop is open: bring it down"):
        _takeover.takeover(runner, layout, "shop:staging", now=NOW)
    assert not [c for c in runner.calls if c[0] in ("btrfs", "cryptsetup")]
