# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.hub_install: the quartet's plans, exact commands, no secret anywhere, hostile input, rollback."""

import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

from ...conftest import fixture_text

# The compose file the fixture docker_compose_config_hub.json was printed from.
COMPOSE = """services:
  web:
    image: lockbox-test/busybox:1
  hub:
    env_file:
      - ./hub/.env
    environment:
      HUB_LOG_LEVEL: info
    command:
      - hub
      - start
      - --docker-socket=${DOCKER_SOCKET}
      - --network-id=${REDIACC_NETWORK_ID}
      - --port=7112
      - --base-domain=${HUB_DOMAIN:-hub.test}
      - --workspace-dir=${REDIACC_WORKING_DIR}devbox/workspaces
      - --idle-timeout=30m
      - --checkpoint
    labels:
      - "rediacc.install_as=systemd"
      - "rediacc.hub.route.code=8080"
      - "rediacc.hub.route.term=7681"
      - "rediacc.hub.image=lockbox-test/hubenv:1"
      - "rediacc.hub.command=exec httpd -f -p __SERVICE_IP__:8080"
      - "rediacc.hub.hook.on_create=echo $$HUB_USER > /workspace/who"
      - "rediacc.hub.user=1000:1000"
      - "rediacc.hub.docker=per-user"
      - "rediacc.hub.limits.cpu=50%"
      - "rediacc.hub.limits.memory=512M"
      - "rediacc.hub.templates.lite.image=lockbox-test/busybox:1"
      - "rediacc.hub.templates.lite.mode=ephemeral"
      - "traefik.enable=true"
      - "traefik.http.routers.hub-code.rule=Host(`code.hub.test`)"
      - "traefik.http.routers.hub-code.entrypoints=websecure"
      - "traefik.http.routers.hub-code.tls.certresolver=letsencrypt"
      - "traefik.http.services.hub-code.loadbalancer.server.port=7112"
"""
SECRETS = ("never-in-argv-or-unit", "0123456789abcdef0123456789abcdef")
NOT_INSTALLED = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nFragmentPath=\nUnitFileState=\n"
RUNNING = "LoadState=loaded\nActiveState=active\nSubState=running\nFragmentPath=x\nUnitFileState=enabled\n"


@pytest.fixture
def host(tmp_path, monkeypatch, fake_runner):
    """A host with repository devbox (networkId 2816) opened, its Hub's compose file, a router."""
    layout = _repository.Layout(str(tmp_path / "ds"), mount_root=str(tmp_path / "mnt"),
                                state_dir=str(tmp_path / "state"))
    mount = tmp_path / "mnt" / "g"
    (mount / "devbox" / "hub").mkdir(parents=True)
    (mount / "devbox" / "docker-compose.yml").write_text(COMPOSE)
    (mount / "devbox" / "hub" / ".env").write_text("".join("S%d=%s\n" % i for i in enumerate(SECRETS)))
    (mount / "devbox" / "workspaces" / "alice-docker").mkdir(parents=True)
    with _state.HostState(layout.state_dir) as state:
        state.put({"name": "devbox", "guid": "g", "network_id": 2816, "status": "ready", "is_fork": False})
    etc = tmp_path / "etc"
    monkeypatch.setattr(_systemd, "UNIT_DIR", str(etc / "systemd"))
    monkeypatch.setattr(_hub_install, "LABELS_FILE", str(etc / "hub" / "hub.labels.yaml"))
    monkeypatch.setattr(_hub_install, "TRAEFIK_FILE", str(etc / "traefik" / "rediacc-hub.yaml"))
    monkeypatch.setattr(_hub_install, "CADDY_FILE", str(etc / "caddy" / "lockbox-hub.caddy"))
    monkeypatch.setattr(_routes, "load_settings", lambda *args: {"machine": "m1", "base_domain": "hub.test"})
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: p == str(mount) or real_ismount(p))
    fake_runner.answer(["docker", "compose"], fixture_text("docker_compose_config_hub.json").replace(
        "/MOUNT/", str(mount) + "/"))
    fake_runner.answer(["systemctl", "show"], NOT_INSTALLED)
    fake_runner.answer(["systemctl", "is-active", "caddy.service"], "active\n")
    fake_runner.silent(["systemctl", "daemon-reload"], ["systemctl", "enable"], ["systemctl", "start"],
                       ["systemctl", "restart"], ["systemctl", "reload"], ["systemctl", "stop"],
                       ["systemctl", "disable"], ["systemctl", "revert"])
    return layout, mount, etc


def _install(fake_runner, layout, check_mode=False, **kwargs):
    del fake_runner.calls[:]
    return _hub_install.converge(fake_runner, layout, kwargs.pop("state", "present"), repository="devbox",
                                 compose_file=kwargs.pop("compose_file", "devbox/docker-compose.yml"),
                                 check_mode=check_mode, **kwargs)


def _files(etc):
    return {str(p.relative_to(etc)): p.read_text() for p in sorted(etc.rglob("*")) if p.is_file()}


def test_check_mode_plans_everything_and_changes_nothing(host, fake_runner):
    layout, mount, etc = host
    result = _install(fake_runner, layout, check_mode=True)
    assert [a["action"] for a in result["actions"]] == ["claim-slot", "write", "write", "write", "write",
                                                        "daemon-reload", "enable", "start", "reload-router"]
    assert result["changed"] and result["listen"] == "127.0.11.2" and result["port"] == 7112
    assert result["hosts"] == ["code.hub.test", "term.hub.test"] and result["templates"] == ["default", "lite"]
    assert not etc.exists() and not (mount / ".rediacc").exists()
    assert [c[:2] for c in fake_runner.calls] == [["systemctl", "show"], ["docker", "compose"]]


def test_install_writes_the_unit_labels_and_routes_then_starts(host, fake_runner):
    layout, mount, etc = host
    result = _install(fake_runner, layout)
    assert result["changed"]
    compose = fake_runner.calls[1]
    override = compose[compose.index("config") - 1]
    assert compose[:5] == ["docker", "compose", "--profile", "rediacc-host", "-f"]
    assert compose[5] == str(mount / "devbox" / "docker-compose.yml") and not os.path.exists(override)
    assert fake_runner.calls[2:] == [["systemctl", "daemon-reload"], ["systemctl", "enable", "rediacc-hub.service"],
                                     ["systemctl", "start", "rediacc-hub.service"],
                                     ["systemctl", "is-active", "caddy.service"],
                                     ["systemctl", "reload", "caddy.service"]]
    files = _files(etc)
    unit = files["systemd/rediacc-hub.service"]
    assert ('ExecStart="/usr/local/bin/renet" "hub" "start" "--labels=%s" "--listen=127.0.11.2" '
            '"--env-file=%s/devbox/hub/.env" '
            '"--docker-socket=/var/run/rediacc/docker-2816.sock" "--network-id=2816" "--port=7112" '
            '"--base-domain=hub.test" "--workspace-dir=%s/devbox/workspaces" "--idle-timeout=30m" "--checkpoint"'
            % (_hub_install.LABELS_FILE, mount, mount)) in unit.splitlines()
    assert "EnvironmentFile" not in unit  # systemd never loads a file the repository's containers may write
    assert "RequiresMountsFor=%s" % mount in unit.splitlines()
    assert 'Environment="HUB_LOG_LEVEL=info"' in unit.splitlines()
    assert 'Environment="REDIACC_NETWORK_ID=2816"' in unit.splitlines()
    assert "HUB_OAUTH_CLIENT_ID" not in unit  # env_file keys stay in the file systemd reads
    for text in [*files.values(), *(" ".join(c) for c in fake_runner.calls)]:
        assert not any(secret in text for secret in SECRETS)
    labels = json.loads(files["hub/hub.labels.yaml"])
    assert labels["routes"] == {"code": 8080, "term": 7681} and labels["listen"] == "127.0.11.2"
    assert labels["templates"]["lite"]["mode"] == "ephemeral" and labels["templates"]["lite"]["user"] == "1000:1000"
    # compose prints a literal $ as $$ (its output is compose input): the Hub gets the value as written
    assert labels["templates"]["default"]["hook.on_create"] == "echo $HUB_USER > /workspace/who"
    traefik = json.loads(files["traefik/rediacc-hub.yaml"])["http"]
    assert traefik["routers"] == {"hub-code": {"rule": "Host(`code.hub.test`)", "entryPoints": ["websecure"],
                                               "service": "rediacc-hub", "tls": {"certResolver": "letsencrypt"}}}
    assert traefik["services"] == {"rediacc-hub": {"loadBalancer": {"servers": [{"url": "http://127.0.11.2:7112"}]}}}
    assert "code.hub.test {" in files["caddy/lockbox-hub.caddy"]
    assert "reverse_proxy 127.0.11.2:7112" in files["caddy/lockbox-hub.caddy"]
    assert json.loads((mount / ".rediacc" / "services.json").read_text())["slots"] == {"hub": 0}


def test_a_repeat_changes_nothing_and_a_changed_label_restarts(host, fake_runner):
    layout, mount, _etc = host
    _install(fake_runner, layout)
    fake_runner.answer(["systemctl", "show"], RUNNING)
    again = _install(fake_runner, layout)
    assert not again["changed"] and again["actions"] == []
    assert _install(fake_runner, layout, check_mode=True)["actions"] == []
    fake_runner.answer(["docker", "compose"], fixture_text("docker_compose_config_hub.json").replace(
        "/MOUNT/", str(mount) + "/").replace('"50%"', '"75%"'))
    changed = _install(fake_runner, layout)
    assert [a["action"] for a in changed["actions"]] == ["write", "restart"]  # the unit itself is unchanged


def _fixture_with(mount, edit):
    model = json.loads(fixture_text("docker_compose_config_hub.json").replace("/MOUNT/", str(mount) + "/"))
    edit(model["services"]["hub"])
    return json.dumps(model)


@pytest.mark.parametrize(("edit", "named"), [
    (lambda hub: hub["command"].__setitem__(3, "--network-id=2880"), "has networkId 2816"),
    (lambda hub: hub["command"].__setitem__(6, "--workspace-dir=/srv/ws"), "outside the repository"),
    (lambda hub: hub["command"].__setitem__(0, "sh"), "hub start"),
    (lambda hub: hub["labels"].__setitem__("rediacc.hub.limits.memory", "1G\nExecStartPre=/bin/id"), "MemoryMax"),
    (lambda hub: hub["labels"].pop("rediacc.install_as"), "exactly one service"),
])
def test_hostile_or_wrong_models_change_nothing(host, fake_runner, edit, named):
    layout, mount, etc = host
    fake_runner.answer(["docker", "compose"], _fixture_with(mount, edit))
    with pytest.raises(InvalidInput) as caught:
        _install(fake_runner, layout)
    assert named in caught.value.msg
    assert not etc.exists() and not (mount / ".rediacc").exists()


def test_files_outside_the_repository_are_refused(host, fake_runner, tmp_path):
    layout, mount, etc = host
    (tmp_path / "elsewhere.yml").write_text(COMPOSE)
    os.symlink(str(tmp_path / "elsewhere.yml"), str(mount / "devbox" / "link.yml"))
    for compose_file, named in (("devbox/link.yml", "compose_file .* outside the repository's mount"),
                                (str(tmp_path / "elsewhere.yml"), "compose_file .* outside the repository's mount"),
                                ("devbox/../../../elsewhere.yml", "'..'"),
                                ("devbox/missing.yml", "does not exist in the repository")):
        with pytest.raises(InvalidInput, match=named):
            _install(fake_runner, layout, compose_file=compose_file)
    (mount / "devbox" / "docker-compose.yml").write_text(COMPOSE.replace("./hub/.env", "../../../outside.env"))
    with pytest.raises(InvalidInput, match=r"env_file .* outside"):
        _install(fake_runner, layout)
    assert not etc.exists()


def test_two_host_services_need_a_name(host, fake_runner):
    layout, mount, _etc = host
    fake_runner.answer(["docker", "compose"], _fixture_with(mount, lambda hub: None).replace(
        '"web": {', '"web": {"labels": {"rediacc.install_as": "systemd"}, '))
    with pytest.raises(InvalidInput, match=r"found 2 \(hub, web\)"):
        _install(fake_runner, layout)
    with pytest.raises(InvalidInput, match="no service 'nope'"):
        _install(fake_runner, layout, service="nope")


def test_a_failed_start_leaves_nothing_behind(host, fake_runner):
    layout, _mount, etc = host
    fake_runner.answer(["systemctl", "start"], rc=1)
    fake_runner.answer(["systemctl", "stop"], rc=5)
    with pytest.raises(LockboxError, match="rolled back: "):
        _install(fake_runner, layout)
    assert _files(etc) == {}
    assert fake_runner.calls[-3:] == [["systemctl", "daemon-reload"], ["systemctl", "stop", "rediacc-hub.service"],
                                      ["systemctl", "disable", "rediacc-hub.service"]]


def test_uninstall_removes_everything_but_users_data(host, fake_runner, monkeypatch):
    layout, mount, etc = host
    _install(fake_runner, layout)
    (mount / "devbox" / "workspaces" / "alice-docker" / ".networkid").write_text("32768\n")
    (etc / "control" / "rediacc-32768.slice.d").mkdir(parents=True)
    monkeypatch.setattr(_hub_install._environments, "CONTROL_DIRS", (str(etc / "control"),))
    fake_runner.answer(["systemctl", "show"], RUNNING)
    result = _install(fake_runner, layout, state="absent")
    assert [a["action"] for a in result["actions"]] == ["stop", "stop-daemon", "remove-socket", "revert-limits",
                                                        "disable", "remove", "remove", "remove", "remove",
                                                        "daemon-reload", "reload-router"]
    assert "rediacc-docker-32768.service" in result["actions"][1]["detail"]
    assert _files(etc) == {} and (mount / "devbox" / "workspaces" / "alice-docker" / ".networkid").is_file()
    fake_runner.answer(["systemctl", "show"], NOT_INSTALLED)
    assert _install(fake_runner, layout, state="absent")["actions"] == []


def test_a_closed_repository_is_named(host, fake_runner, monkeypatch):
    layout, _mount, _etc = host
    monkeypatch.setattr(os.path, "ismount", lambda p: False)
    with pytest.raises(InvalidInput, match="not opened"):
        _install(fake_runner, layout)


def test_unit_quoting_takes_every_argument_literally():
    assert _systemd.quote_exec_arg('a b"$HOME%n\\') == '"a b\\"$$HOME%%n\\\\"'
    assert _systemd.quote_environment("A", "x%y$z") == '"A=x%%y$z"'
    with pytest.raises(InvalidInput):
        _systemd.quote_exec_arg("line\nExecStartPre=/bin/id")


def test_renet_hub_verbs_that_change_things_go_through_the_agent_guard(host, monkeypatch):
    from ansible_collections.lockbox.fleet.plugins.module_utils._front import renet as _renet
    layout, mount, _etc = host
    seen = []
    monkeypatch.setattr(_renet._agents, "check", lambda *args: seen.append(args[0::4]))
    compose = str(mount / "devbox" / "docker-compose.yml")
    for argv in (["hub", "install", compose], ["hub", "uninstall", compose],
                 ["hub", "gc", str(mount / "devbox" / "workspaces"), "--dry-run"], ["hub", "status"]):
        _renet.guard_agents(layout, _renet._parser().parse_args(argv), {}, ancestry=[])
    assert seen == [("devbox", "renet hub install"), ("devbox", "renet hub uninstall"), ("devbox", "renet hub gc")]


def test_a_host_runs_one_hub(host, fake_runner):
    """Another repository's Hub installed: refused before anything is read or written (its users'
    daemons hold networkIds from 32768 that this Hub would hand out again)."""
    layout, _mount, etc = host
    (etc / "hub").mkdir(parents=True)
    (etc / "hub" / "hub.labels.yaml").write_text(json.dumps({"repository": "other", "guid": "g-other"}))
    before = _files(etc)
    with pytest.raises(InvalidInput, match="the Hub of repository other is installed on this host: uninstall it"):
        _install(fake_runner, layout)
    assert _files(etc) == before and fake_runner.calls == [["systemctl", "show", "rediacc-hub.service", "-p",
                                                            "LoadState,ActiveState,SubState,FragmentPath,"
                                                            "UnitFileState"]]
    (etc / "hub" / "hub.labels.yaml").write_text(json.dumps({"repository": "devbox", "guid": "g"}))
    assert _install(fake_runner, layout)["changed"]  # its own Hub again: installed over
