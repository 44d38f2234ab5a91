# SPDX-License-Identifier: GPL-3.0-or-later
"""A Hub user's environment: networkIds, the daemon unit, limits, the container spec, the build steps."""

import json
import os
import socket
import threading
import time

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_environments as _envs
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import criu as _criu_tool

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
    unit = _repo_daemon.unit_content(str(tmp_path / "alice-docker"), 32768, "/etc/rediacc/docker/32768.json",
                                     _envs.daemon_service_lines(32768))
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
    digest = spec["Labels"].pop("rediacc.hub.spec")
    changed = _envs.container_spec("alice", 32768, dict(template, command="true"), str(tmp_path), "img")
    assert len(digest) == 16 and changed["Labels"]["rediacc.hub.spec"] != digest
    assert spec == {
        "Image": "lockbox-test/hubenv:1", "User": "1000:1000", "WorkingDir": "/workspace",
        "Cmd": ["/bin/sh", "-c", "exec httpd -f -p 127.0.128.2:8080 -h /workspace"],
        "Env": ["SERVICE_IP=127.0.128.2", "HUB_USER=alice", "HOME=/workspace"],
        "Labels": {"rediacc.hub.user": "alice", "rediacc.hub.template": "default", "rediacc.network_id": "32768",
                   "rediacc.service_ip": "127.0.128.2"},
        "HostConfig": {"NetworkMode": "host", "ShmSize": 1 << 30, "CapDrop": ["NET_RAW"], "Init": True,
                       "CgroupParent": "rediacc-32768-s0.slice", "SecurityOpt": ["no-new-privileges"],
                       "Annotations": {"org.criu.config": "/run/rediacc/criu/32768.conf"},
                       "Binds": ["%s/alice:/workspace:rw" % tmp_path]}}
    ephemeral = _envs.container_spec("alice", 32768, dict(CONFIG["templates"]["tmp"], name="tmp"), str(tmp_path),
                                     "img")
    assert "Binds" not in ephemeral["HostConfig"] and "/workspace" in ephemeral["HostConfig"]["Tmpfs"]


def test_a_per_user_daemon_is_reached_through_the_gate_and_checkpointed_containers_are_labelled(tmp_path):
    template = dict(CONFIG["templates"]["default"], name="default", docker="per-user", checkpoint=True)
    spec = _envs.container_spec("alice", 32768, template, str(tmp_path), "img")
    assert spec["HostConfig"]["Binds"] == ["%s/alice:/workspace:rw" % tmp_path,
                                           "/run/rediacc/hub/users/alice:/run/lockbox:ro",
                                           "/run/rediacc/hub/users/alice/docker.sock:/var/run/docker.sock"]
    assert spec["Env"][3:] == ["DOCKER_HOST=unix:///run/lockbox/docker.sock",
                               "HUB_WORKSPACE_HOST=%s/alice" % tmp_path]
    assert spec["Labels"]["rediacc.checkpoint"] == "true"
    # Never the daemon's own socket.
    assert not any("docker-32768.sock" in b for b in spec["HostConfig"]["Binds"])
    ephemeral = _envs.container_spec("alice", 32768, dict(template, mode="ephemeral"), str(tmp_path), "img")
    assert "rediacc.checkpoint" not in ephemeral["Labels"]


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


def _made(template, spec=None, running=False):
    return {"Config": {"Labels": {"rediacc.hub.template": template, "rediacc.hub.spec": spec}},
            "State": {"Running": running}}


@pytest.mark.parametrize(("found", "expected"), [
    (None, ["create", "start"]),
    (_made("default", running=True), []),  # made from an older spec, but running: kept
    ("current", ["start"]),
    (_made("default", "0123456789abcdef"), ["remove", "create", "start"]),  # stopped, made from another spec
    (_made("tmp", running=True), ["remove", "create", "start"]),  # the user chose another template
])
def test_the_container_step(tmp_path, fake_runner, found, expected):
    sock = "/var/run/rediacc/docker-32768.sock"
    if found == "current":
        template = dict(CONFIG["templates"]["default"], name="default")
        found = _made("default", _envs.container_spec("alice", 32768, template, str(tmp_path), template["image"])
                      ["Labels"]["rediacc.hub.spec"])
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


def _data_root(workspace, user, network_id, age_days, now):
    root = workspace / ("%s-docker" % user)
    (root / ".rediacc" / "docker" / "data").mkdir(parents=True)
    (workspace / user).mkdir()
    marker = root / ".networkid"
    marker.write_text("%d\n" % network_id)
    os.utime(marker, (now - age_days * 86400, now - age_days * 86400))
    return root


def test_gc_removes_exactly_the_abandoned_data_roots(tmp_path):
    now = time.time()
    roots = {user: _data_root(tmp_path, user, 32768 + 64 * index, age, now)
             for index, (user, age) in enumerate((("gone", 45), ("configured", 60), ("recent", 3), ("mounted", 90)))}
    configured = {32832}
    mounted = {str(roots["mounted"]): [str(roots["mounted"]) + "/.rediacc/docker/data/overlay2/x/merged"]}
    kwargs = {"now": now, "configured": lambda network_id: network_id in configured,
              "mounts": lambda path: mounted.get(path, [])}
    dry = _envs.gc(str(tmp_path), 30 * 86400, True, **kwargs)
    assert [(e["user"], e["eligible"], e["removed"]) for e in dry] == [
        ("configured", False, False), ("gone", True, False), ("mounted", False, False), ("recent", False, False)]
    assert all(root.is_dir() for root in roots.values())
    assert "still configured" in dry[0]["reason"] and "mounted" in dry[2]["reason"]
    real = _envs.gc(str(tmp_path), 30 * 86400, False, **kwargs)
    assert [e["user"] for e in real if e["removed"]] == ["gone"]
    assert not roots["gone"].exists() and (tmp_path / "gone").is_dir()  # the workspace stays
    assert all(roots[u].is_dir() for u in ("configured", "recent", "mounted"))


def test_a_returning_user_refreshes_the_marker(tmp_path):
    lock = threading.Lock()
    network_id = _envs.network_id_for(str(tmp_path), "alice", lock)
    marker = tmp_path / "alice-docker" / ".networkid"
    os.utime(marker, (1, 1))
    assert _envs.network_id_for(str(tmp_path), "alice", lock) == network_id
    assert marker.stat().st_mtime > time.time() - 60


def test_mounts_under_reads_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("36 25 0:31 / /srv/ws/alice-docker/data/merged rw - overlay overlay rw\n"
                    "37 25 0:32 / /srv/ws/alice-dockerx rw - tmpfs tmpfs rw\n"
                    "38 25 0:33 / /srv/ws/with\\040space rw - tmpfs tmpfs rw\n")
    assert _envs._mounts_under("/srv/ws/alice-docker", str(info)) == ["/srv/ws/alice-docker/data/merged"]
    assert _envs._mounts_under("/srv/ws/with space", str(info)) == ["/srv/ws/with space"]


def test_idle_means_no_browser_no_daemon_event_and_no_cpu(tmp_path, fake_runner):
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path), "idle_timeout": 1800})
    busy, resting = envs._env("busy"), envs._env("resting")
    for env, network_id in ((busy, 32768), (resting, 32832)):
        env.status, env.network_id, env.last_active = "ready", network_id, 1000.0
    usage = {32768: 0, 32832: 0}
    assert envs.idle_pass(1030.0, 30, usage.get) == []  # first samples
    usage.update({32768: 20_000_000, 32832: 300_000})  # 20 s of CPU in 30 s: a long job; 0.3 s: nothing
    assert envs.idle_pass(2900.0, 30, usage.get) == ["resting"]
    assert busy.last_active == 2900.0
    envs.touch("resting")  # a request from the browser
    assert envs.idle_pass(2930.0, 30, usage.get) == []
    # What the browser sent on the router's direct route (the kernel's counters) counts the same.
    assert envs.idle_pass(4700.0, 30, usage.get, active={"resting"}) == ["busy"]
    assert resting.last_active == 4700.0
    stopped = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path), "idle_timeout": 0})
    stopped._env("x").status = "ready"
    assert stopped.idle_pass(10 ** 9, 30, lambda _n: 0) == []  # --idle-timeout=0: never


def test_slice_cpu_is_read_from_the_cgroup(tmp_path, monkeypatch):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
    monkeypatch.setattr(_loopback_net, "CGROUP_ROOT", str(tmp_path))
    monkeypatch.setattr(_loopback_net, "slice_cgroup", lambda name, root=None: str(tmp_path / name))
    (tmp_path / "rediacc-32768.slice").mkdir()
    (tmp_path / "rediacc-32768.slice" / "cpu.stat").write_text("usage_usec 123456\nuser_usec 100000\n")
    assert _envs.slice_cpu_usec(32768) == 123456
    assert _envs.slice_cpu_usec(32832) is None


def test_stopping_an_ephemeral_environment_leaves_nothing(tmp_path, fake_runner, monkeypatch):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
    from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd
    monkeypatch.setattr(_systemd, "UNIT_DIR", str(tmp_path / "units"))
    monkeypatch.setattr(_loopback_net, "slice_cgroup", lambda name, root=None: str(tmp_path / "cgroup" / name))
    sock = "/var/run/rediacc/docker-32768.sock"
    fake_runner.answer_api(sock, "DELETE", "/containers/hub-alice?force=1", None, status=204)
    fake_runner.silent(["systemctl", "stop"])
    fake_runner.answer(["systemctl", "show"], "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n")
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path)})
    network_id = _envs.network_id_for(str(tmp_path), "alice", threading.Lock())
    (tmp_path / "alice-docker" / ".rediacc" / "docker" / "data").mkdir(parents=True)
    env = envs._env("alice")
    env.template, env.network_id, env.status = "tmp", network_id, "ready"
    withdrawn = []  # the router's direct route goes while the environment still answers
    envs.leaving = lambda user: withdrawn.append((user, env.status))
    envs.stop("alice")
    assert withdrawn == [("alice", "ready")]
    assert not (tmp_path / "alice-docker").exists() and not (tmp_path / "alice").exists()
    assert _envs.recorded_network_ids(str(tmp_path)) == {} and env.status == "stopped"
    assert ["api", sock, "DELETE", "/containers/hub-alice?force=1"] in fake_runner.calls


def test_the_dashboard_figures(tmp_path, fake_runner):
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path), "idle_timeout": 1800})
    _envs.network_id_for(str(tmp_path), "alice", threading.Lock())
    (tmp_path / "alice").mkdir()
    fake_runner.answer_api("/var/run/rediacc/docker-32768.sock", "GET", "/info", {"Containers": 3, "Images": 2})
    fake_runner.answer(["du", "-s", "-x", "--block-size=1", str(tmp_path / "alice-docker")],
                       "4096\t%s\n" % (tmp_path / "alice-docker"))
    fake_runner.answer(["du", "-s", "-x", "--block-size=1", str(tmp_path / "alice")],
                       "8192\t%s\n" % (tmp_path / "alice"))
    env = envs._env("alice")
    env.status, env.network_id = "ready", 32768
    envs.sample()
    [alice] = envs.status()
    assert (alice["disk_bytes"], alice["containers"], alice["images"]) == (12288, 3, 2)
    assert 1790 <= alice["stops_in_seconds"] <= 1800


def test_a_workspace_replaced_by_a_link_is_refused_and_nothing_is_chowned_through_it(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:x\n")
    os.symlink(str(secret), str(tmp_path / "alice"))
    with pytest.raises(LockboxError, match="not a directory of its own"):
        _envs.prepare_workspace(str(tmp_path / "alice"), {"user": "1000:1000"})
    assert secret.stat().st_uid == 0


@pytest.mark.parametrize("forged", ["2816\n", "32769\n", "0\n", "-64\n", "16777216\n", "abc\n", "32768 2816\n"])
def test_a_forged_marker_is_never_used(tmp_path, forged):
    """Markers lie where the repository's containers may write: 2816 would be the repository's own daemon."""
    (tmp_path / "mallory-docker").mkdir()
    (tmp_path / "mallory-docker" / ".networkid").write_text(forged)
    assert _envs.recorded_network_ids(str(tmp_path)) == {}
    assert _envs.network_id_for(str(tmp_path), "mallory", threading.Lock()) == 32768
    assert (tmp_path / "mallory-docker" / ".networkid").read_text() == "32768\n"


def test_two_markers_never_share_a_network_id_and_links_are_not_data_roots(tmp_path):
    for user in ("alice", "bob"):
        (tmp_path / ("%s-docker" % user)).mkdir()
        (tmp_path / ("%s-docker" % user) / ".networkid").write_text("32768\n")
    os.symlink(str(tmp_path / "alice-docker"), str(tmp_path / "eve-docker"))
    assert _envs.recorded_network_ids(str(tmp_path)) == {"alice": 32768}
    assert _envs.network_id_for(str(tmp_path), "bob", threading.Lock()) == 32832
    with pytest.raises(LockboxError, match="is a link"):
        _envs.network_id_for(str(tmp_path), "eve", threading.Lock())
    assert (tmp_path / "alice-docker" / ".networkid").read_text() == "32768\n"


def test_a_data_root_through_a_link_never_reaches_the_daemon(tmp_path):
    (tmp_path / "alice-docker" / ".rediacc" / "docker").mkdir(parents=True)
    os.symlink("/", str(tmp_path / "alice-docker" / ".rediacc" / "docker" / "data"))
    with pytest.raises(LockboxError, match="is a link"):
        _envs.refuse_links(str(tmp_path), str(tmp_path / "alice-docker" / ".rediacc" / "docker" / "data"))
    _envs.refuse_links(str(tmp_path), str(tmp_path / "bob-docker" / ".rediacc" / "docker" / "data"))  # not there yet
    with pytest.raises(LockboxError, match="outside"):
        _envs.refuse_links(str(tmp_path / "alice-docker"), str(tmp_path / "bob-docker"))


class _Audit:
    def __init__(self):
        self.events = []

    def hub_event(self, user, kind, **fields):
        self.events.append((user, kind, fields))


def _checkpointed(tmp_path, fake_runner, monkeypatch, restore_errors):
    """alice's environment with a hibernation checkpoint; each restore fails with the next of ``restore_errors``."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _criu
    audit = _Audit()
    config = _hub.parse_labels({"rediacc.hub.route.code": "8080", "rediacc.hub.image": "img:1",
                                "rediacc.hub.user": "1000", "rediacc.hub.checkpoint": "true",
                                "rediacc.hub.hook.checkpoint.post_restore": "echo back"})
    envs = _envs.Environments(fake_runner, config, {"workspace_dir": str(tmp_path)}, audit_log=audit)
    env = envs._env("alice")
    env.network_id = _envs.network_id_for(str(tmp_path), "alice", threading.Lock())
    errors = list(restore_errors)
    restored = []

    def restore_containers(_runner, repo, directory, entries):
        assert repo.mount == str(tmp_path / "alice-docker") and repo.network_id == 32768
        assert directory == str(tmp_path / "alice-docker" / ".rediacc" / "checkpoint" / "hub-hibernate")
        restored.append(entries[0]["id"])
        error = errors.pop(0)
        return {"hub-alice": {"restored": not error, "error": error, "started_at": "t"}}
    monkeypatch.setattr(_criu, "restore_containers", restore_containers)

    def hibernated():
        directory = tmp_path / "alice-docker" / ".rediacc" / "checkpoint" / "hub-hibernate"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").write_text(
            '{"name": "hub-hibernate", "containers": [{"container": "hub-alice"}]}')
    sock = "/var/run/rediacc/docker-32768.sock"
    template = dict(config["templates"]["default"], name="default")
    stopped = dict(_made("default", _envs.container_spec("alice", 32768, template, str(tmp_path), "img:1")
                         ["Labels"]["rediacc.hub.spec"]), Id="c0")
    fake_runner.answer_api(sock, "GET", "/containers/hub-alice/json", stopped)
    fake_runner.answer_api(sock, "POST", "/containers/hub-alice/exec", {"Id": "e1"}, status=201)
    fake_runner.answer_api(sock, "POST", "/exec/e1/start", "")
    fake_runner.answer_api(sock, "GET", "/exec/e1/json", {"ExitCode": 0})
    monkeypatch.setattr(_criu_tool, "KERNEL_CACHE", str(tmp_path / "criu.kdat"))
    fake_runner.silent(["criu", "check"])
    return envs, env, audit, hibernated, restored, "unix://" + sock, template


def test_a_hibernated_environment_resumes_from_its_checkpoint(tmp_path, fake_runner, monkeypatch):
    envs, env, audit, hibernated, restored, host, template = _checkpointed(tmp_path, fake_runner, monkeypatch,
                                                                           [None])
    hibernated()
    assert envs._container(env, host, template) is False
    assert restored == ["c0"]
    assert [e[1] for e in audit.events] == ["resumed"]
    assert ["api", host[7:], "POST", "/containers/hub-alice/exec"] in fake_runner.calls  # post_restore hook
    assert not (tmp_path / "alice-docker" / ".rediacc" / "checkpoint" / "hub-hibernate").exists()
    assert _envs.criu_failures(str(tmp_path / "alice-docker")) == 0
    # No checkpoint: a plain start, never a restore.
    fake_runner.answer_api(host[7:], "POST", "/containers/hub-alice/start", None, status=204)
    envs._container(env, host, template)
    assert restored == ["c0"]


def test_three_failed_restores_in_a_row_make_the_container_anew(tmp_path, fake_runner, monkeypatch):
    envs, env, audit, hibernated, _restored, host, template = _checkpointed(
        tmp_path, fake_runner, monkeypatch, ["bad image", "bad image", None, "bad", "bad", "bad"])
    sock = host[7:]
    fake_runner.answer_api(sock, "DELETE", "/containers/hub-alice?force=1", None, status=204)
    for _round in range(2):
        hibernated()
        envs._container(env, host, template)
    assert _envs.criu_failures(str(tmp_path / "alice-docker")) == 2
    hibernated()  # a success resets the count
    envs._container(env, host, template)
    assert _envs.criu_failures(str(tmp_path / "alice-docker")) == 0
    assert [e[1] for e in audit.events] == ["restore-failed", "restore-failed", "resumed"]
    for _round in range(2):
        hibernated()
        envs._container(env, host, template)
    assert not any(c[0] == "api" and c[2] == "DELETE" for c in fake_runner.calls)
    # The third failure in a row: removed, created from the template, started.
    real_api = fake_runner.api

    def api(socket_path, method, path, **kwargs):
        answer = real_api(socket_path, method, path, **kwargs)
        if method == "DELETE":  # from now on the container is gone
            fake_runner.answer_api(socket_path, "GET", "/containers/hub-alice/json", None, status=404)
        return answer
    monkeypatch.setattr(fake_runner, "api", api)
    fake_runner.answer_api(sock, "POST", "/containers/create?name=hub-alice", {"Id": "c1"}, status=201)
    fake_runner.answer_api(sock, "POST", "/containers/hub-alice/start", None, status=204)
    hibernated()
    assert envs._container(env, host, template) is True
    assert [e[1] for e in audit.events][-3:] == ["restore-failed", "criu-recreate", "container-created"]
    assert audit.events[-2][2] == {"failures_in_a_row": 3}
    assert _envs.criu_failures(str(tmp_path / "alice-docker")) == 0
    assert [c[2:] for c in fake_runner.calls if c[0] == "api" and c[2] != "GET"][-3:] == [
        ["DELETE", "/containers/hub-alice?force=1"], ["POST", "/containers/create?name=hub-alice"],
        ["POST", "/containers/hub-alice/start"]]


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"failures_in_a_row": -4}', '{"failures_in_a_row": "9"}'])
def test_a_damaged_failure_count_counts_as_none(tmp_path, text):
    (tmp_path / ".rediacc").mkdir()
    (tmp_path / ".rediacc" / "hub-criu.json").write_text(text)
    assert _envs.criu_failures(str(tmp_path)) == 0


def test_the_failure_count_is_never_written_through_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "alice-docker").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "alice-docker" / ".rediacc"))
    with pytest.raises(LockboxError, match="is a link"):
        _envs.record_criu_failures(str(tmp_path), str(tmp_path / "alice-docker"), 1)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_the_user_s_docker_api_is_judged_before_it_reaches_their_daemon(tmp_path, fake_runner, monkeypatch):
    monkeypatch.setattr(_envs, "GATE_DIR", str(tmp_path / "gates"))
    audit = _Audit()
    envs = _envs.Environments(fake_runner, CONFIG, {"workspace_dir": str(tmp_path / "ws")}, audit_log=audit)
    env = envs._env("alice")
    env.network_id = 32768
    envs._open_gate(env)
    path = tmp_path / "gates" / "alice" / "docker.sock"
    assert oct(path.stat().st_mode & 0o777) == "0o666" and oct((tmp_path / "gates").stat().st_mode & 0o777) == "0o700"
    body = json.dumps({"Image": "img", "HostConfig": {"Binds": ["/:/host"], "Privileged": True}}).encode()
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        client.sendall(b"POST /v1.45/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: %d\r\n\r\n%s"
                       % (len(body), body))
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and b"privileged" in answer and b"outside" in answer
    assert audit.events[0][:2] == ("alice", "docker-refused") and "privileged" in audit.events[0][2]["reason"]
    envs._open_gate(env)  # once per Hub
    envs._close_gate(env)
    assert not (tmp_path / "gates" / "alice").exists()


def test_a_user_s_containers_bind_their_whole_workspace_and_nothing_beside_it(tmp_path):
    from ansible_collections.lockbox.fleet.plugins.module_utils._rules import sandbox as _rules
    for name in ("alice", "alice-docker", "bob"):
        (tmp_path / name).mkdir()
    os.symlink(str(tmp_path / "bob"), str(tmp_path / "alice" / "to-bob"))
    paths = _envs.gate_paths(str(tmp_path), "alice", 32768)

    def create(*binds):
        return _rules.judge_body("container", json.dumps({"HostConfig": {"Binds": list(binds)}}).encode(), paths)
    assert json.loads(create("%s/alice:/w" % tmp_path, "%s/alice/sub:/s:ro" % tmp_path))["HostConfig"]["Binds"] == [
        "%s/alice:/w" % tmp_path, "%s/alice/sub:/s:ro" % tmp_path]
    for outside in ("alice-docker", "bob", "alice/to-bob", "alice/../bob"):
        with pytest.raises(_rules.Refused, match="outside"):
            create("%s/%s:/x" % (tmp_path, outside))


def test_criu_learns_the_kernel_outside_the_user_s_guard_once(tmp_path, fake_runner):
    fake_runner.silent(["criu", "check"])
    _criu_tool.learn_kernel(fake_runner, cache=str(tmp_path / "criu.kdat"))
    (tmp_path / "criu.kdat").write_bytes(b"cached")
    _criu_tool.learn_kernel(fake_runner, cache=str(tmp_path / "criu.kdat"))
    assert fake_runner.calls == [["criu", "check"]]


@pytest.mark.parametrize("dump_error", [None, "criu failed: type DUMP"])
def test_hibernation_ends_hibernated_or_stopped_never_half_way(tmp_path, fake_runner, monkeypatch, dump_error):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _criu
    envs, env, audit, _hibernated, _restored, host, _template = _checkpointed(tmp_path, fake_runner, monkeypatch, [])
    sock = host[7:]
    env.status = "ready"
    dumped = []

    def create(_runner, repo, name, leave_running, lockbox_name, only):
        if dump_error:
            raise LockboxError(dump_error)
        dumped.append((repo.mount, name, leave_running, lockbox_name, only))
    monkeypatch.setattr(_criu, "create", create)
    fake_runner.answer_api(sock, "POST", "/containers/hub-alice/stop?t=10", None, status=204)
    fake_runner.silent(["systemctl", "stop", "rediacc-docker-32768.service"])
    withdrawn = []
    envs.leaving = lambda user: withdrawn.append((user, env.status, list(dumped)))
    envs.hibernate("alice")
    assert withdrawn == [("alice", "ready", [])]  # the direct route goes before anything is dumped
    assert ["systemctl", "stop", "rediacc-docker-32768.service"] in fake_runner.calls
    if dump_error:
        assert env.status == "stopped" and dumped == []
        assert ["api", sock, "POST", "/containers/hub-alice/stop?t=10"] in fake_runner.calls
        assert audit.events[-1] == ("alice", "checkpoint-failed", {"error": dump_error, "failures_in_a_row": 1})
    else:
        assert env.status == "hibernated" and audit.events[-1][:2] == ("alice", "hibernated")
        assert dumped == [(str(tmp_path / "alice-docker"), "hub-hibernate", False, True, {"hub-alice"})]
