# SPDX-License-Identifier: GPL-3.0-or-later
"""A Hub user's environment: networkIds, the daemon unit, limits, the container spec, the build steps."""

import threading

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_environments as _envs
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub

CONFIG = _hub.parse_labels({"rediacc.hub.route.code": "8080", "rediacc.hub.image": "lockbox-test/hubenv:1",
                            "rediacc.hub.command": "exec httpd -f -p __SERVICE_IP__:8080 -h /workspace",
                            "rediacc.hub.user": "1000:1000", "rediacc.hub.limits.cpu": "50%",
                            "rediacc.hub.limits.memory": "256M",
                            "rediacc.hub.templates.tmp.mode": "ephemeral"})


def test_network_ids_are_recorded_reused_and_never_shared(tmp_path):
    lock = threading.Lock()
    assert _envs.network_id_for(str(tmp_path), "alice", lock) == 32768
    assert _envs.network_id_for(str(tmp_path), "bob", lock) == 32832
    assert _envs.network_id_for(str(tmp_path), "alice", lock) == 32768  # a returning user
    (tmp_path / "alice-docker" / ".networkid").unlink()  # alice's data-root lost its marker
    assert _envs.network_id_for(str(tmp_path), "carol", lock) == 32768
    assert (tmp_path / "carol-docker" / ".networkid").read_text() == "32768\n"
    assert _envs.recorded_network_ids(str(tmp_path)) == {"bob": 32832, "carol": 32768}


def test_the_daemon_unit_is_the_repository_daemon_s_in_the_user_s_slice(tmp_path):
    unit = _envs.daemon_unit(str(tmp_path / "alice-docker"), 32768, CONFIG["templates"]["default"])
    lines = unit.splitlines()
    assert lines[lines.index("[Service]") + 1] == "Slice=rediacc-32768.slice"
    assert "RequiresMountsFor=%s/alice-docker" % tmp_path in lines
    assert "ExecStart=/usr/sbin/dockerd --config-file /etc/rediacc/docker/32768.json" in lines
    assert _envs.slice_limits(CONFIG["templates"]["default"]) == ["CPUQuota=50%", "MemoryMax=256M"]
    unlimited = dict(CONFIG["templates"]["default"], **{"limits.cpu": None, "limits.memory": None})
    assert _envs.slice_limits(unlimited) == []


def test_the_container_spec(tmp_path):
    template = dict(CONFIG["templates"]["default"], name="default")
    spec = _envs.container_spec("alice", 32768, template, str(tmp_path), "lockbox-test/hubenv:1")
    assert spec == {
        "Image": "lockbox-test/hubenv:1", "User": "1000:1000", "WorkingDir": "/workspace",
        "Cmd": ["/bin/sh", "-c", "exec httpd -f -p 127.0.128.2:8080 -h /workspace"],
        "Env": ["SERVICE_IP=127.0.128.2", "HUB_USER=alice", "HOME=/workspace"],
        "Labels": {"rediacc.hub.user": "alice", "rediacc.hub.template": "default", "rediacc.network_id": "32768",
                   "rediacc.service_ip": "127.0.128.2"},
        "HostConfig": {"NetworkMode": "host", "ShmSize": 1 << 30, "CapDrop": ["NET_RAW"], "Init": True,
                       "CgroupParent": "rediacc-32768-s0.slice", "SecurityOpt": ["no-new-privileges"],
                       "Binds": ["%s/alice:/workspace:rw" % tmp_path]}}
    ephemeral = _envs.container_spec("alice", 32768, dict(CONFIG["templates"]["tmp"], name="tmp"), str(tmp_path),
                                     "img")
    assert "Binds" not in ephemeral["HostConfig"] and "/workspace" in ephemeral["HostConfig"]["Tmpfs"]


def test_a_numeric_user_owns_the_workspace(tmp_path):
    path = tmp_path / "alice"
    _envs.prepare_workspace(str(path), {"user": "1000:1001"})
    assert (path.stat().st_uid, path.stat().st_gid) == (1000, 1001)
    _envs.prepare_workspace(str(tmp_path / "bob"), {"user": "vscode"})
    assert (tmp_path / "bob").stat().st_uid == 0


def test_a_failed_build_is_reported_on_the_waiting_page(tmp_path, fake_runner, monkeypatch):
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path), "docker_socket": ""})

    def no_daemon(*_args):
        raise LockboxError("dockerd did not answer")
    monkeypatch.setattr(envs, "_daemon", no_daemon)
    env = envs._env("alice")
    envs._build(env)
    assert envs.progress("alice") == {"status": "failed", "ready": False, "error": "dockerd did not answer",
                                      "steps": ["allocating your network",
                                                "starting your Docker daemon (networkId 32768)",
                                                "failed: dockerd did not answer"]}
    assert envs.address("alice") is None


def test_switching_template_rebuilds(tmp_path, fake_runner):
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path)})
    env = envs._env("alice")
    env.status, env.address = "ready", "127.0.128.2"
    envs.choose_template("alice", "default")
    assert envs.address("alice") is None and env.status == "rebuild"


@pytest.mark.parametrize(("found", "expected"), [
    (None, ["create", "start"]),
    ({"Config": {"Labels": {"rediacc.hub.template": "default"}}, "State": {"Running": True}}, []),
    ({"Config": {"Labels": {"rediacc.hub.template": "default"}}, "State": {"Running": False}}, ["start"]),
    ({"Config": {"Labels": {"rediacc.hub.template": "tmp"}}, "State": {"Running": True}}, ["remove", "create",
                                                                                           "start"]),
])
def test_the_container_step(tmp_path, fake_runner, found, expected):
    sock = "/var/run/rediacc/docker-32768.sock"
    fake_runner.answer_api(sock, "GET", "/containers/hub-alice/json", found, status=200 if found else 404)
    fake_runner.answer_api(sock, "DELETE", "/containers/hub-alice?force=1", None, status=204)
    fake_runner.answer_api(sock, "POST", "/containers/create?name=hub-alice", {"Id": "c1"}, status=201)
    fake_runner.answer_api(sock, "POST", "/containers/hub-alice/start", None, status=204)
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path)})
    env = envs._env("alice")
    env.network_id = 32768
    created = envs._container(env, "unix://" + sock, dict(CONFIG["templates"]["default"], name="default"))
    done = [{"DELETE": "remove", "POST": "create" if "create" in c[3] else "start"}[c[2]]
            for c in fake_runner.calls if c[2] != "GET"]
    assert done == expected and created == ("create" in expected)
