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


def _started_plan(tmp_path, monkeypatch, fake_runner, unit_text):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
    from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd
    monkeypatch.setattr(_systemd, "UNIT_DIR", str(tmp_path))
    if unit_text is not None:
        (tmp_path / "rediacc-docker-2816.service").write_text(unit_text)
    fake_runner.answer(["systemctl", "show"], "LoadState=not-found\nActiveState=inactive\n")
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    daemon = _repo_daemon._Daemon(fake_runner, layout, {"network_id": 2816, "guid": "g"}, str(tmp_path))
    daemon.plan_started()
    fake_runner.silent(["systemctl", "daemon-reload"], ["systemctl", "start"])
    del fake_runner.calls[:]
    for action in daemon.actions:
        action.apply()
    return [a.name for a in daemon.actions], fake_runner.calls


def test_a_new_unit_starts_without_a_daemon_reload(tmp_path, monkeypatch, fake_runner):
    names, calls = _started_plan(tmp_path, monkeypatch, fake_runner, None)
    assert names == ["write-config", "write-unit", "start"]
    assert calls == [["systemctl", "start", "rediacc-docker-2816.service"]]


def test_a_changed_unit_is_reloaded_before_the_start(tmp_path, monkeypatch, fake_runner):
    names, calls = _started_plan(tmp_path, monkeypatch, fake_runner, "[Unit]\nDescription=older\n")
    assert names == ["write-config", "write-unit", "start"]
    assert calls == [["systemctl", "daemon-reload"], ["systemctl", "start", "rediacc-docker-2816.service"]]
