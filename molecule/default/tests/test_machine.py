# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks after machine_setup.yml, the integration target and a reboot (Molecule verify)."""

import json
import os
import re

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

GIB = 1024 ** 3


def datastore_device(host):
    return host.ansible.get_variables().get("datastore_device") or ""


def test_guest_was_rebooted_since_setup(host):
    before = host.file("/root/.lockbox-boot-id-before-reboot").content_string.strip()
    now = host.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    assert before and now and before != now


def test_datastore_is_mounted_btrfs_after_reboot(host):
    mount = host.mount_point("/mnt/rediacc")
    assert mount.exists
    assert mount.filesystem == "btrfs"
    assert "noatime" in mount.options


def test_mount_unit_is_enabled_and_active(host):
    unit = host.service("mnt-rediacc.mount")
    assert unit.is_enabled
    assert unit.is_running
    text = host.file("/etc/systemd/system/mnt-rediacc.mount").content_string
    assert "WantedBy=multi-user.target" in text


def test_datastore_backing_and_size(host):
    found = json.loads(host.check_output("findmnt -J -b -o SOURCE,FSTYPE --mountpoint /mnt/rediacc"))
    source = found["filesystems"][0]["source"]
    usage = host.check_output("btrfs filesystem usage -b /mnt/rediacc")
    fs_size = int(re.search(r"Device size:\s+(\d+)", usage).group(1))
    device = datastore_device(host)
    if device:
        assert source == device
        assert fs_size == 4 * GIB
    else:
        loops = json.loads(host.check_output("losetup -J -l -O NAME,BACK-FILE,AUTOCLEAR"))["loopdevices"]
        [loop] = [d for d in loops if d["name"] == source]
        assert loop["back-file"] == "/var/lib/rediacc/datastore.pool"
        assert loop["autoclear"] is True
        assert host.file("/var/lib/rediacc/datastore.pool").size == GIB
        assert fs_size == GIB


def test_integration_target_left_nothing_behind(host):
    assert not host.file("/var/lib/lockbox-it/datastore.pool").exists
    assert not host.file("/etc/systemd/system/srv-lockbox\\x2dit.mount").exists
    assert not host.mount_point("/srv/lockbox-it").exists


def test_kernel_modules_are_loaded_after_reboot(host):
    # On fleet-b nothing opens a LUKS volume at boot (fleet-a's autostart does): there dm_crypt
    # is loaded only because /etc/modules-load.d/lockbox.conf loaded it.
    listed = [line for line in host.file("/etc/modules-load.d/lockbox.conf").content_string.splitlines()
              if line and not line.startswith("#")]
    assert listed == ["loop", "btrfs", "dm_crypt"]
    for module in ("loop", "btrfs", "dm_crypt"):
        assert host.file("/sys/module/%s" % module).is_directory, module


def test_criu_is_ready_for_checkpoints(host):
    assert host.run("criu --version").rc == 0
    lines = [line for line in host.file("/etc/criu/runc.conf").content_string.splitlines()
             if line and not line.startswith("#")]
    assert lines == ["tcp-established"]


def test_autostart_and_reconcile_units_are_enabled(host):
    assert host.service("rediacc-autostart.service").is_enabled
    assert host.service("rediacc-reconcile.timer").is_enabled
    assert host.service("rediacc-reconcile.timer").is_running
