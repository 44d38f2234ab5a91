# SPDX-License-Identifier: GPL-3.0-or-later
"""repo_transfer: the btrfs and ssh argv, the stream pump, and the target side's refusals."""

import io
import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_transfer as _transfer
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import ssh as _ssh

from ...conftest import FakeRunner, fixture_text

GUID = "ab606f8b-83e3-410b-ba96-a5089db7c4ed"
SNAP = "20261125T132320Z-102087"


def test_find_new_lists_the_generations_of_written_extents():
    assert _btrfs.parse_find_new(fixture_text("btrfs_find_new_changed.txt")) == [17, 10]
    assert _btrfs.parse_find_new(fixture_text("btrfs_find_new_unchanged.txt")) == [10]
    assert _btrfs.parse_find_new("transid marker was 10\n") == []


def test_written_since_asks_from_the_next_generation_and_ignores_older_extents():
    runner = FakeRunner()
    runner.answer(["btrfs", "subvolume", "find-new", "/r", "11"], fixture_text("btrfs_find_new_unchanged.txt"))
    assert _btrfs.written_since(runner, "/r", 10) is False
    runner.answer(["btrfs", "subvolume", "find-new", "/r", "11"], fixture_text("btrfs_find_new_changed.txt"))
    assert _btrfs.written_since(runner, "/r", 10) is True


def test_send_and_receive_argv():
    assert _btrfs.send_argv("/s/two") == ["btrfs", "send", "-q", "/s/two"]
    assert _btrfs.send_argv("/s/two", "/s/one") == ["btrfs", "send", "-q", "-p", "/s/one", "/s/two"]
    # Confined: a stream cannot write outside the repository's snapshot directory.
    assert _btrfs.receive_argv("/d/snapshots/g") == ["btrfs", "receive", "-C", "/d/snapshots/g"]


def test_a_cut_stream_leaves_a_writable_subvolume_without_received_uuid():
    shown = _btrfs.parse_subvolume_show(fixture_text("btrfs_subvolume_show_cut.txt"))
    assert shown["readonly"] is False and shown["received_uuid"] is None


def test_read_only_snapshots_of_a_frozen_repository():
    runner = FakeRunner()
    runner.silent(["btrfs"], ["setsid"])
    _btrfs.snapshot(runner, "/r/g", "/s/g/x", readonly=True)
    _btrfs.snapshot(runner, "/r/g", "/s/g/x", freeze="/m/g", readonly=True)
    assert runner.calls[0] == ["btrfs", "subvolume", "snapshot", "-r", "/r/g", "/s/g/x"]
    assert runner.calls[1][-2:] == [runner.calls[1][-2], "-r"] and runner.calls[1][6:9] == ["/m/g", "/r/g", "/s/g/x"]


def test_ssh_argv_checks_host_keys_and_runs_only_the_words():
    target = _ssh.Target("10.0.2.2", port=2222)
    assert target.argv(["renet", "transfer", "offer"]) == [
        "ssh", "-T", "-i", "/var/lib/rediacc/transfer/id_ed25519", "-p", "2222", "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/var/lib/rediacc/transfer/known_hosts", "-o", "ConnectTimeout=15",
        "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
        "root@10.0.2.2", "--", "renet", "transfer", "offer"]
    assert str(_ssh.Target("[fd00::1]")) == "root@fd00::1 port 22"


@pytest.mark.parametrize("address", ["-oProxyCommand=id", "a b", "host;id", "", None, "a/b", "$(id)", "h\nx", "host\n"])
def test_ssh_targets_that_are_not_addresses_are_refused(address):
    with pytest.raises(InvalidInput, match="not a host name or an IP address"):
        _ssh.Target(address)


@pytest.mark.parametrize("port", [0, 65536, True, "22", -1])
def test_ssh_ports_are_checked(port):
    with pytest.raises(InvalidInput, match="not a TCP port"):
        _ssh.Target("h", port=port)


def test_ssh_users_are_checked():
    with pytest.raises(InvalidInput, match="not a user name"):
        _ssh.Target("h", user="root -oX")
    with pytest.raises(InvalidInput, match="not a user name"):
        _ssh.Target("h", user="root\n")


def test_an_unreachable_target_and_a_refusal_are_told_apart():
    target = _ssh.Target("10.0.2.2", port=1)
    runner = FakeRunner()
    runner.answer(["ssh"], rc=255)
    with pytest.raises(LockboxError, match=r"cannot reach the target root@10\.0\.2\.2 port 1 over SSH"):
        _ssh.call(runner, target, ["renet", "transfer", "offer"], {"name": "x"})
    refused = target.explain(LockboxError("ssh failed", cmd=["ssh"], rc=1, stderr="renet: parcel is open on b\n"))
    assert refused.msg == "the target root@10.0.2.2 port 1 refused: renet: parcel is open on b"
    runner = FakeRunner()
    runner.answer(["ssh"], "not json")
    with pytest.raises(LockboxError, match="not JSON"):
        _ssh.call(runner, target, ["renet", "transfer", "offer"])


def test_secrets_travel_on_stdin_never_in_argv():
    runner = FakeRunner()
    runner.answer(["ssh"], "{}")
    _ssh.call(runner, _ssh.Target("h"), ["renet", "transfer", "commit"], {"secrets": {"DB": ["env", "s3cret"]}})
    assert "s3cret" not in " ".join(runner.calls[0])
    assert b"s3cret" in runner.stdins[0]


def test_pipe_streams_through_the_meter_and_reports_the_consumer():
    seen = []
    result = Runner().pipe(["sh", "-c", "wc -c"], producer=["sh", "-c", "head -c 300000 /dev/zero"],
                           meter=lambda chunk: seen.append(len(chunk)), chunk=65536)
    assert result.stdout.strip() == "300000" and sum(seen) == 300000


def test_pipe_names_the_side_that_failed():
    with pytest.raises(LockboxError, match=r"sh failed \(rc=3\): producer broke") as err:
        Runner().pipe(["sh", "-c", "cat >/dev/null"], producer=["sh", "-c", "echo producer broke >&2; exit 3"])
    assert err.value.cmd[-1] == "echo producer broke >&2; exit 3"
    with pytest.raises(LockboxError, match=r"sh failed \(rc=4\): consumer broke") as err:
        Runner().pipe(["sh", "-c", "echo consumer broke >&2; exit 4"], producer=["sh", "-c", "yes | head -c 5000000"])
    assert err.value.cmd[-1] == "echo consumer broke >&2; exit 4"
    with pytest.raises(LockboxError, match=r"sh failed \(rc=5\)"):
        Runner().pipe(["sh", "-c", "head -c 10 >/dev/null; exit 5"], source=io.BytesIO(b"x" * 100000))


def test_a_meter_that_raises_stops_both_sides():
    def stop(_chunk):
        raise LockboxError("stopped")
    with pytest.raises(LockboxError, match="stopped"):
        Runner().pipe(["sh", "-c", "cat >/dev/null"], producer=["sh", "-c", "yes"], meter=stop)


def test_the_meter_counts_checksums_and_paces():
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds
    meter = _transfer.Meter("parcel", total=4 << 20, limit=1 << 20, clock=lambda: now[0], sleep=sleep)
    meter(b"a" * (1 << 20))
    meter(b"b" * (1 << 20))
    report = meter.done()
    assert slept == [1.0, 1.0]  # 1 MiB/s: each MiB waits its second
    assert report["sent"] == 2 << 20 and report["seconds"] == 2.0 and report["percent"] == 50.0
    assert report["crc32"] == "%08x" % __import__("zlib").crc32(b"b" * (1 << 20), __import__("zlib").crc32(
        b"a" * (1 << 20)))
    assert report["line"] == "parcel: 2 MiB of 4 MiB (50.0 %), 1 MiB/s, 2 s left"


@pytest.mark.parametrize("words, message", [
    (["cat", "/etc/shadow"], "may only run renet transfer"),
    (["renet", "transfer"], "may only run renet transfer"),
    (["renet", "up", "x"], "may only run renet transfer"),
    (["renet", "transfer", "status"], "unknown transfer request"),
    (["renet", "transfer", "offer", "extra"], "unknown transfer request"),
    (["renet", "transfer", "receive", GUID], "unknown transfer request"),
    (["renet", "transfer", "receive", "../../etc", SNAP], "not a repository GUID"),
])
def test_the_target_serves_its_three_verbs_only(words, message):
    with pytest.raises(InvalidInput, match=message):
        _transfer.serve(FakeRunner(), _repository.Layout("/nonexistent"), words, io.BytesIO(b"{}"), io.StringIO())


@pytest.mark.parametrize("body, message", [(b"[1]", "not a JSON object"), (b"{", "not JSON"),
                                           (b'{"guid": "../x"}', "not a repository GUID")])
def test_requests_that_are_not_what_they_should_be_are_refused(body, message):
    with pytest.raises(InvalidInput, match=message):
        _transfer.serve(FakeRunner(), _repository.Layout("/nonexistent"), ["renet", "transfer", "offer"],
                        io.BytesIO(body), io.StringIO())


def _target(tmp_path, monkeypatch, records=()):
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    monkeypatch.setattr(_repository.Layout, "check_datastore", lambda self: None)
    (tmp_path / "state" / "repos").mkdir(parents=True)
    for record in records:
        (tmp_path / "state" / "repos" / ("%s.json" % record["name"])).write_text(json.dumps(record))
    return layout


def test_another_repository_of_that_name_is_never_replaced(tmp_path, monkeypatch):
    layout = _target(tmp_path, monkeypatch, [{"name": "parcel", "guid": "11111111-2222-3333-4444-555555555555",
                                              "network_id": 2816, "status": "ready"}])
    with pytest.raises(InvalidInput, match="another repository named parcel"):
        _transfer.offer(FakeRunner(), layout, {"name": "parcel", "guid": GUID})


def test_the_same_repository_under_another_name_is_refused(tmp_path, monkeypatch):
    layout = _target(tmp_path, monkeypatch, [{"name": "old", "guid": GUID, "network_id": 2816, "status": "ready"}])
    with pytest.raises(InvalidInput, match=r"is on .* as old"):
        _transfer.offer(FakeRunner(), layout, {"name": "parcel", "guid": GUID})


def test_an_open_copy_is_never_replaced(tmp_path, monkeypatch):
    layout = _target(tmp_path, monkeypatch, [{"name": "parcel", "guid": GUID, "network_id": 2816, "status": "ready"}])
    monkeypatch.setattr(_transfer.os.path, "exists", lambda path: path == layout.mapper_device(GUID))
    with pytest.raises(InvalidInput, match="parcel is open on"):
        _transfer.offer(FakeRunner(), layout, {"name": "parcel", "guid": GUID})


def test_a_new_repository_is_offered_with_no_snapshots(tmp_path, monkeypatch):
    layout = _target(tmp_path, monkeypatch)
    answer = _transfer.offer(FakeRunner(), layout, {"name": "parcel", "guid": GUID})
    assert answer["snapshots"] == [] and answer["repository"]["exists"] is False


def test_commit_refuses_a_copy_whose_counts_differ_and_removes_it(tmp_path, monkeypatch):
    layout = _target(tmp_path, monkeypatch)
    directory = tmp_path / "ds" / "snapshots" / GUID
    (directory / SNAP).mkdir(parents=True)
    (directory / (".%s.receipt" % SNAP)).write_text(json.dumps({"bytes": 10, "crc32": "00000001"}))
    monkeypatch.setattr(_btrfs, "is_subvolume", lambda path: path.endswith(SNAP))
    runner = FakeRunner()
    shown = fixture_text("btrfs_subvolume_show_received.txt")
    runner.answer(["btrfs", "subvolume", "show"], shown)
    runner.silent(["btrfs", "subvolume", "delete"])
    received = _btrfs.parse_subvolume_show(shown)["received_uuid"]
    request = {"name": "parcel", "guid": GUID, "snapshot": SNAP, "uuid": received, "bytes": 10, "crc32": "00000002",
               "record": {"name": "parcel", "guid": GUID}}
    with pytest.raises(LockboxError, match=r"verification failed: .* received 10 bytes .*CRC-32 00000001.*sent 10 "
                                           r"bytes .*CRC-32 00000002"):
        _transfer.commit(runner, layout, request)
    assert runner.calls[-1] == ["btrfs", "subvolume", "delete", str(directory / SNAP)]
    assert not list((tmp_path / "state" / "repos").iterdir())


def test_status_shows_copies_under_way_and_drops_the_lines_of_copies_killed_outright(tmp_path):
    meter = _transfer.Meter("parcel", total=4 << 20, progress_dir=str(tmp_path), clock=lambda: 100.0)
    meter(b"x" * 1024)
    meter.write()
    dead = {"line": "receive-20261125T100000Z-a1b2c3: 1.0 MiB", "pid": 2 ** 22 + 1}  # above pid_max: never alive
    (tmp_path / "receive-20261125T100000Z-a1b2c3.json").write_text(json.dumps(dead))
    (tmp_path / "torn.json").write_text("{")
    assert _transfer.progress_lines(str(tmp_path)) == [meter.report()["line"]]
    assert sorted(os.listdir(tmp_path)) == ["parcel.json", "torn.json"]
    meter.done()
    assert _transfer.progress_lines(str(tmp_path)) == []
