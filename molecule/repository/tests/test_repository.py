# SPDX-License-Identifier: GPL-3.0-or-later
"""After converge (repo_create + repo_fork playbooks) and the integration target."""

import json
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("fleet-a")

STATE = "/var/lib/rediacc/state/repos"


def record(host, name):
    return json.loads(host.file("%s/%s.json" % (STATE, name)).content_string)


def test_repository_and_fork_are_mounted_ext4_on_luks(host):
    for name in ("app", "app:review"):
        guid = record(host, name)["guid"]
        mount = host.mount_point("/mnt/rediacc/mounts/%s" % guid)
        assert mount.exists and mount.filesystem == "ext4"
        assert mount.device == "/dev/mapper/lockbox-%s" % guid
        assert host.check_output("cryptsetup status lockbox-%s | awk '/type:/ {print $2}'" % guid) == "LUKS2"


def test_fork_identity_and_parent(host):
    app, fork = record(host, "app"), record(host, "app:review")
    assert fork["parent_guid"] == app["guid"] and fork["tag"] == "review" and fork["is_fork"]
    assert fork["network_id"] != app["network_id"]
    assert {app["status"], fork["status"]} == {"ready"}


def test_each_repository_image_is_its_own_subvolume(host):
    listed = host.check_output("btrfs subvolume list -o /mnt/rediacc/repositories")
    for name in ("app", "app:review"):
        assert "repositories/%s" % record(host, name)["guid"] in listed


def test_state_files_are_root_only(host):
    state = host.file("%s/app.json" % STATE)
    assert state.user == "root" and state.mode == 0o600


def test_integration_target_left_nothing(host):
    names = [f for f in host.file(STATE).listdir() if f.startswith("it-")]
    assert names == []
    # Mapper devices are named lockbox-<guid>: only those of repositories that still exist may remain.
    guids = {json.loads(host.file("%s/%s" % (STATE, f)).content_string)["guid"]
             for f in host.file(STATE).listdir() if f.endswith(".json")}
    mapped = {n[len("lockbox-"):] for n in host.check_output("ls /dev/mapper").split() if n.startswith("lockbox-")}
    assert mapped <= guids, mapped - guids
    assert not host.file("/run/lockbox-fault-paused").exists
