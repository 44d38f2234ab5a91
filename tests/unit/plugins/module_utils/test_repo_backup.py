# SPDX-License-Identifier: GPL-3.0-or-later
"""repo_backup: backups planned and taken with exact argv, retention applied, verify, restore, one run at a time."""

import datetime
import fcntl
import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_backup as _backup
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs

from ...conftest import FakeRunner, fixture_text

REPO = {"name": "shop", "guid": "11111111-1111-4111-8111-111111111111", "network_id": 2816,
        "subnet": "127.0.11.0/26", "size": 67108864, "key_kind": "key", "status": "ready", "is_fork": False,
        "parent": None, "parent_guid": None}
OTHER = dict(REPO, name="depot", guid="33333333-3333-4333-8333-333333333333", network_id=2880)
NOW = datetime.datetime(2026, 11, 25, 14, 0, 0, tzinfo=datetime.timezone.utc)
KEY = _repository.Key("backup-test-key-XXXXXXXXXXXXXXXXXXXXXXXXXXXX", "key")


@pytest.fixture
def host(tmp_path, monkeypatch):
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    monkeypatch.setattr(_repository.Layout, "check_datastore", lambda self: None)
    (tmp_path / "state" / "repos").mkdir(parents=True)
    for record in (REPO, OTHER):
        (tmp_path / "state" / "repos" / ("%s.json" % record["name"])).write_text(json.dumps(record))
        (tmp_path / "ds" / "repositories" / record["guid"]).mkdir(parents=True)
    monkeypatch.setattr(_btrfs, "is_subvolume", os.path.isdir)
    urandom = os.urandom
    monkeypatch.setattr(_backup.os, "urandom", lambda n: b"\xa1\xb2\xc3" if n == 3 else urandom(n))
    return layout, tmp_path


def record(tmp_path, name):
    path = tmp_path / "state" / "repos" / ("%s.json" % name)
    return json.loads(path.read_text()) if path.exists() else None


def old_backups(layout, *names, guid=REPO["guid"]):
    for name in names:
        os.makedirs(os.path.join(layout.backups(guid), name))


def test_a_hot_backup_of_a_closed_repository_is_one_read_only_snapshot(host):
    layout, _tmp = host
    runner = FakeRunner()
    runner.silent(["btrfs", "subvolume", "snapshot"])
    result = _backup.backup(runner, layout, "shop", now=NOW)
    assert result["changed"] and result["backup"] == "20261125T140000Z-a1b2c3" and result["outage_ms"] is None
    assert runner.calls == [["btrfs", "subvolume", "snapshot", "-r", layout.subvolume(REPO["guid"]),
                             layout.backups(REPO["guid"]) + "/20261125T140000Z-a1b2c3"]]


def test_check_mode_plans_and_runs_nothing(host):
    layout, _tmp = host
    old_backups(layout, "20261120T103000Z-aaaaaa", "20261120T101500Z-bbbbbb")
    runner = FakeRunner()  # only what reads: show the newest backup, find what was written since
    runner.answer(["btrfs", "subvolume", "show"], fixture_text("btrfs_subvolume_show_sent.txt"))
    runner.answer(["btrfs", "subvolume", "find-new"], fixture_text("btrfs_find_new_changed.txt"))
    result = _backup.backup(runner, layout, "shop", retention={"last": 2}, check_mode=True, now=NOW)
    assert [c[:3] for c in runner.calls] == [["btrfs", "subvolume", "show"], ["btrfs", "subvolume", "find-new"]]
    assert [a["action"] for a in result["actions"]] == ["snapshot", "expire"]
    assert result["expired"] == ["20261120T101500Z-bbbbbb"]
    assert sorted(os.listdir(layout.backups(REPO["guid"]))) == ["20261120T101500Z-bbbbbb", "20261120T103000Z-aaaaaa"]


def test_no_new_backup_while_the_newest_holds_the_current_data(host):
    layout, _tmp = host
    old_backups(layout, "20261120T103000Z-aaaaaa")
    runner = FakeRunner()
    runner.answer(["btrfs", "subvolume", "show"], fixture_text("btrfs_subvolume_show_sent.txt"))
    runner.answer(["btrfs", "subvolume", "find-new"], fixture_text("btrfs_find_new_unchanged.txt"))
    result = _backup.backup(runner, layout, "shop", now=NOW)
    assert not result["changed"] and result["unchanged_since"] == "20261120T103000Z-aaaaaa"
    assert runner.calls[-1] == ["btrfs", "subvolume", "find-new", layout.subvolume(REPO["guid"]), "11"]
    changed = FakeRunner()
    changed.silent(["btrfs", "subvolume", "snapshot"])
    changed.answer(["btrfs", "subvolume", "show"], fixture_text("btrfs_subvolume_show_sent.txt"))
    changed.answer(["btrfs", "subvolume", "find-new"], fixture_text("btrfs_find_new_changed.txt"))
    assert _backup.backup(changed, layout, "shop", now=NOW)["backup"] == "20261125T140000Z-a1b2c3"


def test_retention_removes_exactly_the_expired_backups_and_their_checksums(host):
    layout, _tmp = host
    old_backups(layout, "20261125T133000Z-aaaaaa", "20261125T131500Z-bbbbbb", "20261124T090000Z-cccccc",
                "20261123T230000Z-dddddd", "not-a-backup")
    checksum = os.path.join(layout.backups(REPO["guid"]), "20261125T131500Z-bbbbbb.sha256")
    with open(checksum, "w") as handle:
        handle.write("ab" * 32)
    runner = FakeRunner()
    runner.silent(["btrfs", "subvolume", "delete"])
    result = _backup.prune(runner, layout, "shop", {"last": 1, "daily": 2})
    assert result["expired"] == ["20261125T131500Z-bbbbbb", "20261123T230000Z-dddddd"]
    assert result["kept"] == {"20261125T133000Z-aaaaaa": ["last", "daily"], "20261124T090000Z-cccccc": ["daily"]}
    assert runner.calls == [["btrfs", "subvolume", "delete", layout.backups(REPO["guid"]) + "/" + n]
                            for n in result["expired"]]
    assert not os.path.exists(checksum)


def test_a_retention_that_keeps_nothing_is_refused_before_anything_runs(host):
    layout, _tmp = host
    for policy in ({}, {"last": 0}, {"forever": 1}, {"last": -1}, {"last": True}):
        with pytest.raises(InvalidInput):
            _backup.backup(FakeRunner(), layout, "shop", retention=policy)


def test_a_second_run_on_the_datastore_is_refused(host):
    layout, _tmp = host
    os.makedirs(layout.datastore, exist_ok=True)
    fd = os.open(os.path.join(layout.datastore, ".backup.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    runner = FakeRunner()
    try:
        with pytest.raises(LockboxError, match="another backup, prune, verify or restore is running"):
            _backup.backup(runner, layout, "shop", now=NOW)
        with pytest.raises(LockboxError, match="another backup"):
            _backup.restore(runner, layout, "shop", "copy")
    finally:
        os.close(fd)
    assert runner.calls == []


class _Seen:
    def __init__(self, layout, runner, record, deep=True):
        self.subvolume, self.mount = True, True


def test_a_cold_backup_brings_the_services_down_for_the_snapshot_and_up_again(host, monkeypatch):
    layout, _tmp = host
    steps = []
    monkeypatch.setattr(_backup._repository, "Observed", _Seen)
    monkeypatch.setattr(_backup._repo_app, "is_up", lambda runner, repo: True)
    monkeypatch.setattr(_backup._repo_app, "down", lambda runner, repo, environ: steps.append("down"))
    monkeypatch.setattr(_backup._repo_app, "up", lambda runner, repo, environ: steps.append("up"))
    runner = FakeRunner()
    runner.answer(["setsid"], "")
    result = _backup.backup(runner, layout, "shop", mode="cold", now=NOW, environ={})
    assert [a["action"] for a in result["actions"]] == ["down", "snapshot", "up"]
    assert steps == ["down", "up"] and result["outage_ms"] >= 0
    assert runner.calls[0][:4] == ["setsid", "--wait", "sh", "-c"] and runner.calls[0][-1] == "-r"
    # A failed snapshot still brings the services up.
    steps.clear()
    failing = FakeRunner()
    failing.answer(["setsid"], rc=1)
    with pytest.raises(LockboxError):
        _backup.backup(failing, layout, "shop", mode="cold", now=NOW, environ={})
    assert steps == ["down", "up"]
    # So does a down() that fails half way (some services may be stopped already).
    steps.clear()

    def failing_down(runner, repo, environ):
        steps.append("down")
        raise LockboxError("down() of app/Rediaccfile failed")
    monkeypatch.setattr(_backup._repo_app, "down", failing_down)
    with pytest.raises(LockboxError, match="down"):
        _backup.backup(FakeRunner(), layout, "shop", mode="cold", now=NOW, environ={})
    assert steps == ["down", "up"]


def _image(layout, name, content=b"LUKS\xba\xbe" + b"\0" * 4096):
    old_backups(layout, name)
    path = os.path.join(layout.backups(REPO["guid"]), name, "disk.img")
    with open(path, "wb") as handle:
        handle.write(content)
    return path


def _verify_runner():
    runner = FakeRunner()
    runner.answer(["losetup", "--find", "--show", "--read-only"], "/dev/loop7\n")
    runner.silent(["cryptsetup", "open"], ["cryptsetup", "close"], ["e2fsck"], ["losetup", "--detach"])
    return runner


def test_verify_records_the_checksum_then_compares_it_and_opens_read_only(host):
    layout, _tmp = host
    image = _image(layout, "20261125T133000Z-aaaaaa")
    runner = _verify_runner()
    first = _backup.verify(runner, layout, "shop", KEY)
    assert first["changed"] and first["checksum"] == "recorded" and first["fsck"] == "clean"
    mapper = runner.calls[1][-1]
    assert mapper.startswith("lockbox-verify-")
    assert runner.calls == [
        ["losetup", "--find", "--show", "--read-only", image],
        ["cryptsetup", "open", "--type", "luks2", "--readonly", "--key-file=-", "/dev/loop7", mapper],
        ["e2fsck", "-n", "-f", "/dev/mapper/" + mapper],
        ["cryptsetup", "close", mapper],
        ["losetup", "--detach", "/dev/loop7"]]
    assert KEY.material in runner.stdins and not any(KEY.material in " ".join(c) for c in runner.calls)
    again = _backup.verify(_verify_runner(), layout, "shop", KEY)
    assert not again["changed"] and again["checksum"] == "matches" and again["sha256"] == first["sha256"]


def test_verify_finds_a_damaged_backup_before_opening_it(host):
    layout, _tmp = host
    image = _image(layout, "20261125T133000Z-aaaaaa")
    _backup.verify(_verify_runner(), layout, "shop", KEY)
    with open(image, "r+b") as handle:
        handle.seek(100)
        handle.write(b"X")
    runner = _verify_runner()
    with pytest.raises(LockboxError, match="is damaged: its SHA-256 is"):
        _backup.verify(runner, layout, "shop", KEY)
    assert runner.calls == []


def test_verify_closes_what_it_opened_when_e2fsck_finds_errors(host):
    layout, _tmp = host
    _image(layout, "20261125T133000Z-aaaaaa")
    runner = _verify_runner()
    runner.answer(["e2fsck"], "Inode 12 has illegal blocks\n", rc=4)
    with pytest.raises(LockboxError, match="e2fsck -n found errors"):
        _backup.verify(runner, layout, "shop", KEY)
    assert [c[:2] for c in runner.calls[-2:]] == [["cryptsetup", "close"], ["losetup", "--detach"]]
    with pytest.raises(InvalidInput, match="a key"):
        _backup.verify(FakeRunner(), layout, "shop", None)


def test_restore_as_a_new_repository(host):
    layout, tmp_path = host
    old_backups(layout, "20261124T090000Z-cccccc", "20261125T133000Z-aaaaaa")
    runner = FakeRunner()
    runner.silent(["btrfs", "subvolume", "snapshot"], ["cryptsetup", "luksUUID"])
    result = _backup.restore(runner, layout, "shop", "shop-copy", at="2026-11-24")
    new = record(tmp_path, "shop-copy")
    assert result["backup"] == "20261124T090000Z-cccccc" and new["status"] == "ready"
    assert new["guid"] not in (REPO["guid"], OTHER["guid"]) and new["network_id"] not in (2816, 2880)
    assert not new["is_fork"] and new["restored_from"] == {"guid": REPO["guid"], "backup": "20261124T090000Z-cccccc"}
    assert runner.calls == [
        ["btrfs", "subvolume", "snapshot", layout.backups(REPO["guid"]) + "/20261124T090000Z-cccccc",
         layout.subvolume(new["guid"])],
        ["cryptsetup", "luksUUID", "--batch-mode", "--uuid", new["guid"], layout.image(new["guid"])]]
    repeat = _backup.restore(FakeRunner(), layout, "shop", "shop-copy", at="2026-11-24")
    assert not repeat["changed"]
    with pytest.raises(InvalidInput, match="exists already"):
        _backup.restore(FakeRunner(), layout, "shop", "shop-copy")  # the newest backup: another source
    fork = FakeRunner()
    fork.silent(["btrfs", "subvolume", "snapshot"], ["cryptsetup", "luksUUID"])
    _backup.restore(fork, layout, "shop", "shop:rewind")
    assert record(tmp_path, "shop:rewind")["parent_guid"] == REPO["guid"]


def test_restore_refuses_hostile_names_and_times(host):
    layout, _tmp = host
    old_backups(layout, "20261125T133000Z-aaaaaa")
    for as_name, at, says in (("depot:x", None, "another repository's fork"), ("../etc", None, "restore_as"),
                              ("copy\n", None, "restore_as"), ("depot", None, "exists already"),
                              ("copy", "../../etc/shadow", "is neither a backup name"),
                              ("copy", "2001-01-01", "no backup was taken at or before"),
                              ("copy", "20261125T133000Z-ffffff", "there is no backup")):
        runner = FakeRunner()
        with pytest.raises(InvalidInput, match=says):
            _backup.restore(runner, layout, "shop", as_name, at=at)
        assert runner.calls == []


def test_a_failed_restore_leaves_no_repository(host):
    layout, tmp_path = host
    old_backups(layout, "20261125T133000Z-aaaaaa")
    runner = FakeRunner()
    runner.answer(["btrfs", "subvolume", "snapshot"], "")
    runner.answer(["cryptsetup", "luksUUID"], rc=1)
    runner.silent(["btrfs", "subvolume", "delete"])
    os.makedirs(layout.repositories, exist_ok=True)
    real_snapshot = _btrfs.snapshot

    def snapshot(runner_, source, target, **kwargs):
        real_snapshot(runner_, source, target, **kwargs)
        os.makedirs(target)
    _backup._btrfs.snapshot = snapshot
    try:
        with pytest.raises(LockboxError, match="nothing restored: copy removed again"):
            _backup.restore(runner, layout, "shop", "copy")
    finally:
        _backup._btrfs.snapshot = real_snapshot
    assert record(tmp_path, "copy") is None
    assert runner.calls[-1][:3] == ["btrfs", "subvolume", "delete"]


def test_a_strategy_run_backs_up_each_repository_and_goes_on_after_a_failure(host, tmp_path, monkeypatch):
    layout, _tmp = host
    directory = tmp_path / "strategies"
    directory.mkdir()
    strategy = {"name": "nightly", "repositories": ["shop", "gone", "depot"], "schedule": "*-*-* 02:00:00",
                "retention": {"daily": 7}, "datastore": layout.datastore}
    (directory / "nightly.json").write_text(json.dumps(strategy))
    monkeypatch.setattr(_backup._state, "DEFAULT_STATE_DIR", layout.state_dir)
    monkeypatch.setattr(_backup._repository, "Layout", lambda datastore: layout)
    runner = FakeRunner()
    runner.silent(["btrfs", "subvolume", "snapshot"])
    said = []
    assert _backup.run_strategy(runner, "nightly", said.append, directory=str(directory)) == 1
    assert said[0].startswith("renet backup nightly: shop: took ") and said[0].endswith("(hot); expired 0")
    assert said[1] == "renet backup nightly: gone: FAILED: unknown repository 'gone'"
    assert said[2].startswith("renet backup nightly: depot: took ")
    with pytest.raises(InvalidInput, match="strategy name"):
        _backup.run_strategy(runner, "../nightly", said.append, directory=str(directory))


def test_a_strategy_with_copy_to_copies_each_backed_up_repository_there(host, tmp_path, monkeypatch):
    layout, _tmp = host
    directory = tmp_path / "strategies"
    directory.mkdir()
    strategy = {"name": "offsite", "repositories": ["shop", "depot"], "schedule": "hourly",
                "retention": {"last": 2}, "datastore": layout.datastore,
                "copy_to": {"address": "10.0.2.2", "port": 2222}}
    (directory / "offsite.json").write_text(json.dumps(strategy))
    monkeypatch.setattr(_backup._repository, "Layout", lambda datastore: layout)
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_transfer as _transfer
    pushed = []

    def push(runner, where, name, target):
        pushed.append((where, name, str(target)))
        if name == "depot":
            raise LockboxError("cannot reach the target root@10.0.2.2 port 2222 over SSH: timed out")
        return {"changed": True, "transfer": {"mode": "delta", "line": "shop: 2.0 MiB in 0.5 s"}}
    monkeypatch.setattr(_transfer, "push", push)
    runner = FakeRunner()
    runner.silent(["btrfs", "subvolume", "snapshot"])
    said = []
    assert _backup.run_strategy(runner, "offsite", said.append, directory=str(directory)) == 1
    assert pushed == [(layout, "shop", "root@10.0.2.2 port 2222"), (layout, "depot", "root@10.0.2.2 port 2222")]
    assert said[1] == "renet backup offsite: shop: copied to 10.0.2.2: delta, shop: 2.0 MiB in 0.5 s"
    assert said[2].startswith("renet backup offsite: depot: took ")
    assert said[3] == ("renet backup offsite: depot: copy to 10.0.2.2 FAILED: cannot reach the target "
                       "root@10.0.2.2 port 2222 over SSH: timed out")


@pytest.mark.parametrize("copy_to, says", [
    ({"address": "-oProxyCommand=id"}, "copy_to: target address"),
    ({"address": "b", "port": 0}, "copy_to: target port"), ({"address": "b", "port": "22"}, "copy_to: target port"),
])
def test_a_copy_to_that_is_no_ssh_target_is_refused(copy_to, says):
    good = {"name": "a", "repositories": ["shop"], "schedule": "hourly", "retention": {"last": 1}}
    with pytest.raises(InvalidInput, match=says):
        _backup.check_strategy(FakeRunner(), dict(good, copy_to=copy_to))


def test_a_role_s_strategies_are_checked_together_before_any_is_written():
    runner = FakeRunner()
    runner.answer(["systemd-analyze", "calendar", "--", "hourly"], "  Original form: hourly\n")
    runner.answer(["systemd-analyze", "calendar", "--", "Mon..Fry 25:00"], rc=1)
    good = {"name": "a", "repositories": ["shop"], "schedule": "hourly", "retention": {"last": 1}}
    assert [s["name"] for s in _backup.check_strategies(runner, [good, dict(good, name="b")])] == ["a", "b"]
    with pytest.raises(InvalidInput, match="two backup strategies are named a"):
        _backup.check_strategies(runner, [good, good])
    with pytest.raises(InvalidInput, match="is not a systemd calendar expression"):
        _backup.check_strategies(runner, [good, dict(good, name="b", schedule="Mon..Fry 25:00")])
    with pytest.raises(InvalidInput, match="are a list"):
        _backup.check_strategies(runner, good)
