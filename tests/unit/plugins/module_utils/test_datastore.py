# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning and applying the datastore against recorded tool output (no host access)."""

import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import datastore as _datastore
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

from ...conftest import FakeRunner, fixture_text

GIB = 1024 ** 3
NOT_FOUND = fixture_text("systemctl_show_missing.txt")
ENABLED = fixture_text("systemctl_show_mounted.txt")


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A fake host: unit files in tmp, pool file paths in tmp, allocation recorded."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    monkeypatch.setattr(_systemd, "UNIT_DIR", str(unit_dir))
    allocated = []

    def fake_allocate(path, size):
        allocated.append((path, size))
        with open(path, "wb") as handle:
            handle.truncate(size)

    monkeypatch.setattr(_datastore, "_allocate", fake_allocate)
    pool = tmp_path / "pool" / "datastore.pool"
    pool.parent.mkdir()
    return {"pool": str(pool), "units": unit_dir, "allocated": allocated}


SILENT = (["mkfs.btrfs"], ["systemctl", "daemon-reload"], ["systemctl", "enable"], ["systemctl", "start"],
          ["systemctl", "stop"], ["systemctl", "disable"], ["losetup", "--set-capacity"],
          ["btrfs", "filesystem", "resize"],
          ["losetup", "--detach"], ["umount"], ["wipefs"])


def fresh_runner():
    runner = FakeRunner()
    runner.silent(*SILENT)
    runner.answer(["systemctl", "show"], NOT_FOUND)
    runner.answer(["findmnt"], "", rc=1)
    runner.answer(["blkid"], "", rc=2)
    runner.answer(["losetup", "--list"], '{"loopdevices": []}')
    return runner


def mounted_runner(usage_fixture="btrfs_usage_1g.txt", loop_size=GIB):
    runner = FakeRunner()
    runner.silent(*SILENT)
    runner.answer(["systemctl", "show"], ENABLED)
    runner.answer(["findmnt"], fixture_text("findmnt_datastore.json"))
    runner.answer(["blkid"], fixture_text("blkid_btrfs_pool.txt"))
    runner.answer(["btrfs", "filesystem", "usage"], fixture_text(usage_fixture))
    runner.answer(["lsblk"], '{"blockdevices": [{"path": "/dev/loop0", "size": %d}]}' % loop_size)
    return runner


def make_present(host, size=GIB):
    with open(host["pool"], "wb") as handle:
        handle.truncate(size)
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"])
    _systemd.write_unit_file(spec.unit, spec.unit_content())


def loop_points_at(runner, pool):
    runner.answer(["losetup", "--list"],
                  '{"loopdevices": [{"name": "/dev/loop0", "back-file": "%s", "autoclear": true, "ro": false}]}' % pool)


def test_create_plans_every_step_and_check_mode_changes_nothing(host):
    runner = fresh_runner()
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1G")
    result = _datastore.converge_datastore(runner, spec, check_mode=True)
    assert result["changed"] is True
    assert [a["action"] for a in result["actions"]] == [
        "create-pool-file", "format", "write-unit", "enable-unit", "mount"]
    assert result["datastore"]["size"] == GIB and result["datastore"]["free"] is None
    assert result["diff"]["before"]["state"] == "absent"
    assert not os.path.exists(host["pool"]) and host["allocated"] == []
    assert not list(host["units"].iterdir())
    # Check mode only observes.
    assert {c[0] for c in runner.calls} <= {"systemctl", "findmnt", "blkid", "losetup"}
    assert all(c[:2] == ["systemctl", "show"] for c in runner.calls if c[0] == "systemctl")


def test_create_applies_in_order_with_exact_argv(host):
    runner = fresh_runner()
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1G")
    _datastore.converge_datastore(runner, spec)
    observing = ("findmnt", "blkid", "losetup")
    changing = [c for c in runner.calls if c[:2] != ["systemctl", "show"] and c[0] not in observing]
    assert host["allocated"] == [(host["pool"], GIB)]
    assert changing == [
        ["mkfs.btrfs", "--quiet", "--label", "lockbox-datastore", host["pool"]],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "mnt-rediacc.mount"],
        ["systemctl", "start", "mnt-rediacc.mount"],
    ]
    unit = (host["units"] / "mnt-rediacc.mount").read_text()
    assert "What=%s\n" % host["pool"] in unit and "Options=loop,noatime\n" in unit
    assert "RequiresMountsFor=%s\n" % os.path.dirname(host["pool"]) in unit


def test_converged_datastore_plans_nothing(host):
    make_present(host)
    runner = mounted_runner()
    loop_points_at(runner, host["pool"])
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1G")
    result = _datastore.converge_datastore(runner, spec)
    assert result["changed"] is False and result["actions"] == []
    assert result["datastore"]["free"] == 949616640
    assert result["datastore"]["size"] == GIB


def test_grow_plans_file_loop_and_filesystem(host):
    make_present(host)
    runner = mounted_runner()
    loop_points_at(runner, host["pool"])
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1.5G")
    result = _datastore.converge_datastore(runner, spec, check_mode=True)
    assert [a["action"] for a in result["actions"]] == ["grow-pool-file", "refresh-loop", "grow-filesystem"]
    runner.calls.clear()
    _datastore.converge_datastore(runner, spec)
    assert ["losetup", "--set-capacity", "/dev/loop0"] in runner.calls
    assert ["btrfs", "filesystem", "resize", "max", "/mnt/rediacc"] in runner.calls
    assert host["allocated"] == [(host["pool"], 1610612736)]


def test_interrupted_grow_is_finished_by_a_rerun(host):
    # The pool file already grew, the loop device and filesystem did not.
    make_present(host, size=1610612736)
    runner = mounted_runner(loop_size=GIB)
    loop_points_at(runner, host["pool"])
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1.5G")
    result = _datastore.converge_datastore(runner, spec, check_mode=True)
    assert [a["action"] for a in result["actions"]] == ["refresh-loop", "grow-filesystem"]
    # The loop device grew too: only the filesystem is left (btrfs reports slack).
    runner = mounted_runner("btrfs_usage_slack.txt", loop_size=1610612736)
    loop_points_at(runner, host["pool"])
    result = _datastore.converge_datastore(runner, spec, check_mode=True)
    assert [a["action"] for a in result["actions"]] == ["grow-filesystem"]


def test_shrink_is_refused_before_any_change(host):
    make_present(host, size=1610612736)
    runner = mounted_runner("btrfs_usage_grown.txt", loop_size=1610612736)
    loop_points_at(runner, host["pool"])
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1G")
    with pytest.raises(InvalidInput, match="shrinking is refused"):
        _datastore.converge_datastore(runner, spec)
    assert all(c[0] in ("systemctl", "findmnt", "blkid", "losetup", "btrfs", "lsblk") for c in runner.calls)
    assert not any(c[:2] == ["btrfs", "filesystem"] and c[2] != "usage" for c in runner.calls)


def test_absent_needs_force_and_then_removes_everything(host):
    make_present(host)
    runner = mounted_runner()
    loop_points_at(runner, host["pool"])
    with pytest.raises(InvalidInput, match="force=true"):
        _datastore.converge_datastore(runner, _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], state="absent"))
    assert os.path.exists(host["pool"])
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], state="absent", force=True)
    result = _datastore.converge_datastore(runner, spec)
    assert [a["action"] for a in result["actions"]] == ["unmount", "disable-unit", "remove-unit", "delete-pool-file"]
    assert ["systemctl", "stop", "mnt-rediacc.mount"] in runner.calls
    assert not os.path.exists(host["pool"])
    assert not (host["units"] / "mnt-rediacc.mount").exists()


def test_absent_on_a_clean_host_is_unchanged_without_force(host):
    spec = _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], state="absent")
    assert _datastore.converge_datastore(fresh_runner(), spec)["changed"] is False


def test_foreign_filesystem_is_never_formatted(host):
    with open(host["pool"], "wb") as handle:
        handle.truncate(GIB)
    runner = fresh_runner()
    runner.answer(["blkid"], fixture_text("blkid_ext4_device.txt"))
    with pytest.raises(LockboxError, match="holds a ext4 filesystem"):
        _datastore.converge_datastore(runner, _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1G"))
    assert not any(c[0] == "mkfs.btrfs" for c in runner.calls)


def test_mount_point_used_by_something_else_is_refused(host):
    make_present(host)
    runner = mounted_runner()
    runner.answer(["losetup", "--list"], '{"loopdevices": []}')
    with pytest.raises(LockboxError, match="not from"):
        _datastore.converge_datastore(runner, _datastore.Spec("/mnt/rediacc", pool_file=host["pool"], size="1G"))


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "relative"}, "absolute"),
    ({"path": "/proc/rediacc"}, "/proc"),
    ({"path": "/mnt/rediacc", "size": "12XB"}, "not a size"),
    ({"path": "/mnt/rediacc", "size": "100M"}, "minimum"),
    ({"path": "/mnt/rediacc", "device": "/dev/vdb", "size": "1G"}, "pool file"),
    ({"path": "/mnt/rediacc", "device": "/srv/disk"}, "under /dev"),
    ({"path": "/mnt/rediacc", "pool_file": "/mnt/rediacc/pool"}, "inside the datastore"),
    ({"path": "/mnt/rediacc", "state": "gone"}, "state"),
])
def test_bad_input_is_rejected_before_observing(kwargs, message):
    with pytest.raises(InvalidInput) as err:
        _datastore.Spec(**kwargs)
    assert message in err.value.msg
