# SPDX-License-Identifier: GPL-3.0-or-later
import json

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon

MOUNT = "/mnt/rediacc/mounts/0b6f3c2e-8f5d-4d8e-9a57-2f1f0f4c1a11"


def test_daemon_json_keeps_the_on_host_contract():
    config = json.loads(_repo_daemon.render_config(MOUNT, 6336))
    assert config["hosts"] == ["unix:///var/run/rediacc/docker-6336.sock"]
    assert config["data-root"] == MOUNT + "/.rediacc/docker/data"
    assert config["bridge"] == "none" and config["iptables"] is False and config["experimental"] is True
    assert config["exec-root"] == "/run/rediacc/docker-6336"
    assert config["pidfile"] == "/run/rediacc/docker-6336.pid"


def test_unit_needs_the_mount_and_names_the_config():
    unit = _repo_daemon.unit_content(MOUNT, 6336, "/etc/rediacc/docker-6336.json")
    assert "RequiresMountsFor=%s\n" % MOUNT in unit
    assert "ExecStart=/usr/sbin/dockerd --config-file /etc/rediacc/docker-6336.json\n" in unit
    assert _repo_daemon.unit_name(6336) == "rediacc-docker-6336.service"
