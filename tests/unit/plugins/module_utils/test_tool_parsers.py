# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsers against output recorded in a trixie guest (util-linux 2.41, btrfs-progs 6.14, systemd 257)."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import transfer as _transfer
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import findmnt as _findmnt
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import losetup as _losetup
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import lsblk as _lsblk
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

from ...conftest import FakeRunner, fixture_text


def test_findmnt_datastore():
    [mount] = _findmnt.parse(fixture_text("findmnt_datastore.json"))
    assert mount["source"] == "/dev/loop0"
    assert mount["target"] == "/mnt/rediacc"
    assert mount["fstype"] == "btrfs"
    assert "noatime" in mount["options"]
    assert mount["uuid"] == "7a3f873b-0808-4309-849e-0dc482924657"


def test_findmnt_subvolume_source_is_split():
    text = '{"filesystems": [{"source": "/dev/vdb[/@data]", "target": "/srv", "fstype": "btrfs", "options": "rw"}]}'
    [mount] = _findmnt.parse(text)
    assert (mount["source"], mount["subvolume"]) == ("/dev/vdb", "/@data")


def test_findmnt_nothing_mounted_is_none():
    runner = FakeRunner()
    runner.answer(["findmnt"], "", rc=1)
    assert _findmnt.mount_at(runner, "/mnt/nothing") is None
    assert runner.calls == [
        ["findmnt", "-J", "-o", "SOURCE,TARGET,FSTYPE,OPTIONS,UUID", "--mountpoint", "/mnt/nothing"]]


def test_losetup_datastore():
    [loop] = _losetup.parse(fixture_text("losetup_datastore.json"))
    assert loop == {"name": "/dev/loop0", "back_file": "/var/lib/rediacc/datastore.pool",
                    "autoclear": True, "read_only": False}


def test_losetup_deleted_backing_file():
    text = ('{"loopdevices": [{"name": "/dev/loop3", "back-file": "/x/pool (deleted)",'
            ' "autoclear": false, "ro": false}]}')
    assert _losetup.parse(text)[0]["back_file"] == "/x/pool"


def test_blkid_btrfs_pool():
    signature = _lsblk.parse_blkid_export(fixture_text("blkid_btrfs_pool.txt"))
    assert signature["TYPE"] == "btrfs"
    assert signature["LABEL"] == "lockbox-datastore"
    assert signature["FSSIZE"] == "1073741824"


def test_blkid_nothing_found_is_empty():
    runner = FakeRunner()
    runner.answer(["blkid"], "", rc=2)
    assert _lsblk.probe(runner, "/dev/vdb") == {}


def test_lsblk_sizes():
    assert _lsblk.parse_lsblk(fixture_text("lsblk_loop_grown.json")) == [
        {"name": "/dev/loop0", "size": 1610612736, "fstype": "btrfs", "type": "loop"}]
    assert _lsblk.parse_lsblk(fixture_text("lsblk_vdb.json"))[0]["size"] == 4294967296


@pytest.mark.parametrize("fixture, device_size, slack, free", [
    ("btrfs_usage_1g.txt", 1073741824, 0, 949616640),
    ("btrfs_usage_slack.txt", 1073741824, 536870912, 949616640),
    ("btrfs_usage_grown.txt", 1610612736, 0, 1486487552),
])
def test_btrfs_usage(fixture, device_size, slack, free):
    usage = _btrfs.parse_usage(fixture_text(fixture))
    assert usage["device_size"] == device_size
    assert usage["slack"] == slack
    assert usage["free_estimated"] == free
    assert usage["used"] == 294912


def test_btrfs_usage_garbage_is_an_error():
    with pytest.raises(LockboxError, match="lacks"):
        _btrfs.parse_usage("ERROR: not a btrfs filesystem: /mnt/x\n")


def test_systemctl_show():
    assert _systemd.parse_show(fixture_text("systemctl_show_mounted.txt")) == {
        "LoadState": "loaded", "ActiveState": "active", "SubState": "mounted",
        "FragmentPath": "/etc/systemd/system/mnt-rediacc.mount", "UnitFileState": "enabled"}
    runner = FakeRunner()
    runner.answer(["systemctl", "show"], fixture_text("systemctl_show_missing.txt"))
    assert _systemd.unit_status(runner, "mnt-nothing.mount") == {
        "loaded": False, "active": False, "enabled": False, "fragment": None}


def test_mount_unit_names_match_systemd_escape():
    recorded = fixture_text("systemd_escape.txt").splitlines()
    paths = ["/mnt/rediacc", "/srv/lock box/data-1", "/a.b/_c:d", "/mnt/ünï"]
    assert [_systemd.mount_unit_name(p) for p in paths] == recorded


def test_ext4_size_from_tune2fs():
    from ansible_collections.lockbox.fleet.plugins.module_utils._tools import e2fs as _e2fs
    assert _e2fs.parse_superblock(fixture_text("tune2fs_repo.txt")) == 61440 * 4096


def test_btrfs_subvolume_show_of_a_sent_and_a_received_snapshot():
    """record_btrfs_transfer.sh: ``sent/two`` sent as a difference from ``sent/one`` into ``received/``."""
    sent = _btrfs.parse_subvolume_show(fixture_text("btrfs_subvolume_show_sent.txt"))
    received = _btrfs.parse_subvolume_show(fixture_text("btrfs_subvolume_show_received.txt"))
    assert sent["path"] == "sent/two" and sent["readonly"] and sent["received_uuid"] is None
    assert sent["id"] == 258 and isinstance(sent["generation"], int)
    assert received["path"] == "received/two" and received["readonly"]
    # What receive records is the sender's UUID: the target knows which of our snapshots it holds.
    assert received["received_uuid"] == sent["uuid"] != received["uuid"]
    local = [dict(sent, name="two", time=2)]
    assert _transfer.common_base(local, [received])["name"] == "two"
    # The difference of a 2 MiB rewrite of the 8 MiB image was a 2.0 MiB stream (not the image's size).
    assert int(fixture_text("btrfs_send_delta_bytes.txt")) < 1.01 * (2 << 20)


@pytest.mark.parametrize("text", ["", "x\n\tName: x\n"])
def test_btrfs_subvolume_show_without_identity_is_an_error(text):
    with pytest.raises(LockboxError):
        _btrfs.parse_subvolume_show(text)
