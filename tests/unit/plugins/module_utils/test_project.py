# SPDX-License-Identifier: GPL-3.0-or-later
"""renet compose / lifecycle / watchdog rules that need no daemon."""

import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import watchdog as _watchdog

from ...conftest import fixture_text


@pytest.mark.parametrize(("args", "expected"), [
    (["up", "-d"], ([], ["up", "-d"])),
    (["-f", "a.yml", "-p", "x", "up", "-d"], (["-f", "a.yml", "-p", "x"], ["up", "-d"])),
    (["--file=a.yml", "down"], (["--file=a.yml"], ["down"])),
    (["--dry-run", "ps"], (["--dry-run"], ["ps"])),
    ([], ([], [])),
])
def test_split_compose_args(args, expected):
    assert _project.split_compose_args(args) == expected


def test_service_order_follows_the_file_not_the_alphabet(tmp_path):
    text = """---
name: demo
x-base: &base
  image: x
services:
  web:
    <<: *base
    environment:
      db: not-a-service
  "db":
    image: y
  api-v2: {image: z}
  # flow style and comments are YAML, not lines
volumes:
  data: {}
"""
    (tmp_path / "compose.yaml").write_text(text)
    assert _project.service_order(str(tmp_path / "compose.yaml")) == ["web", "db", "api-v2"]
    assert _project.ordered_services([], ["b", "a"]) == ["a", "b"]
    (tmp_path / "broken.yaml").write_text("services: [\n")
    assert _project.service_order(str(tmp_path / "broken.yaml")) == []


def test_env_names_are_shell_safe():
    assert _project.env_name("web") == "WEB_IP"
    assert _project.env_name("api-v2.internal") == "API_V2_INTERNAL_IP"


def test_containers_come_from_the_api_with_exit_codes_and_labels(fake_runner):
    sock = "/var/run/rediacc/docker-2816.sock"
    listed = json.loads(fixture_text("docker_api_containers.json"))
    fake_runner.answer_api(sock, "GET", "/containers/json?all=1", listed)
    api, web = _project.containers(fake_runner, 2816)
    assert fake_runner.calls == [["api", sock, "GET", "/containers/json?all=1"]]
    assert api["name"] == "app-api-1" and api["state"] == "running" and api["exit_code"] is None
    assert api["service"] == "api" and api["service_ip"] == "127.0.11.3" and api["network_id"] == "2816"
    assert api["service_port"] is None  # an unset label is None, never ""
    assert web["state"] == "exited" and web["exit_code"] == 137 and web["service_port"] == "8080"
    assert web["project_dir"].endswith("/app")


def test_a_daemon_that_does_not_answer_has_no_version(fake_runner):
    sock = "/var/run/rediacc/docker-2816.sock"
    fake_runner.answer_api(sock, "GET", "/version", status=None)
    assert _repo_daemon.server_version(fake_runner, 2816) is None
    fake_runner.answer_api(sock, "GET", "/version", {"Version": "26.1.5+dfsg1", "ApiVersion": "1.45"})
    assert _repo_daemon.server_version(fake_runner, 2816) == "26.1.5+dfsg1"


@pytest.mark.parametrize(("policy", "state", "code", "restart"), [
    ("always", "exited", 0, True), ("always", "running", None, False),
    ("unless-stopped", "exited", 137, True), ("on-failure", "exited", 1, True),
    ("on-failure", "exited", 0, False), ("on-failure:3", "exited", 2, True),
    ("no", "exited", 1, False), (None, "exited", 1, False),
])
def test_watchdog_policy(policy, state, code, restart):
    assert _watchdog.needs_restart(policy, {"state": state, "exit_code": code}) is restart


def test_routes_for_repositories_and_forks():
    repo = _project.Repository("marketing", "g", 6336, "/m")
    found = [{"service": "myapp", "service_port": "8080"}, {"service": "db", "service_port": None}]
    assert _repo_app.routes_of(repo, found, "server-1", "example.com") == ["https://myapp.marketing.server-1.example.com"]
    fork = _project.Repository("marketing:staging", "h", 6400, "/n")
    assert _repo_app.routes_of(fork, found, "server-1", "example.com", parent="marketing", tag="staging") == \
        ["https://myapp-fork-staging.marketing.server-1.example.com"]


def test_repository_environment_keeps_the_on_host_contract():
    env = _project.Repository("app", "0b6f", 6336, "/mnt/rediacc/mounts/0b6f").environment()
    assert env["REDIACC_WORKING_DIR"] == "/mnt/rediacc/mounts/0b6f/"
    assert env["REDIACC_NETWORK_ID"] == "6336" and env["REDIACC_REPOSITORY"] == "0b6f"
    assert env["DOCKER_HOST"] == "unix:///var/run/rediacc/docker-6336.sock"


def test_rediaccfiles_anywhere_parents_first_hidden_and_deep_ones_skipped(tmp_path):
    for sub in ("", "web", "a/b", "a/b/c/d", "a/b/c/d/e", ".rediacc", ".git/x", "z"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / "Rediaccfile").write_text("up() { :; }\n")
    found = _project.rediaccfiles(str(tmp_path))
    assert found == [str(tmp_path / sub / "Rediaccfile") for sub in ("", "a/b", "a/b/c/d", "web", "z")]
    before = _project.fingerprint(str(tmp_path))
    (tmp_path / "web" / "compose.yaml").write_text("services: {}\n")
    assert _project.fingerprint(str(tmp_path)) != before


def test_a_symlinked_rediaccfile_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("up() { :; }\n")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Rediaccfile").symlink_to(tmp_path / "elsewhere")
    from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
    with pytest.raises(InvalidInput, match="web/Rediaccfile is not a regular file"):
        _project.rediaccfiles(str(tmp_path))


def test_slots_are_repository_wide_and_never_move(tmp_path):
    (tmp_path / "compose.yaml").write_text("services: {web: {image: a}, db: {image: b}}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "compose.other.yaml").write_text("services: {worker: {image: c}, web: {image: a}}\n")
    (tmp_path / "sub" / "notes.yaml").write_text("services: {ignored: {}}\n")
    repo = _project.Repository("app", "g", 6336, str(tmp_path))
    assert _project.mount_slots(repo) == {"web": 0, "db": 1, "worker": 2}
    assert _project.service_environment(repo, _project.mount_slots(repo)) == {
        "WEB_IP": "127.0.24.194", "DB_IP": "127.0.24.195", "WORKER_IP": "127.0.24.196"}
    (tmp_path / "compose.yaml").write_text("services: {cache: {image: a}, db: {image: b}}\n")
    assert _project.claim_slots(str(tmp_path), ["cache", "db"]) == {"web": 0, "db": 1, "worker": 2, "cache": 3}


@pytest.mark.parametrize(("policy", "attempts", "restart"), [
    ("on-failure:3", 2, True), ("on-failure:3", 3, False), ("on-failure", 50, True), ("always", 99, True)])
def test_watchdog_honours_on_failure_limits(policy, attempts, restart):
    assert _watchdog.needs_restart(policy, {"state": "exited", "exit_code": 1}, attempts) is restart


def test_env_files_and_includes_outside_the_repository_are_refused_before_compose_reads_them(tmp_path):
    mount, other = tmp_path / "g", tmp_path / "h"
    (mount / "app").mkdir(parents=True)
    (other / "app").mkdir(parents=True)
    (other / "app" / ".env").write_text("TOKEN=theirs\n")
    (mount / "app" / "base.yaml").write_text("services: {b: {image: x, env_file: [../../h/app/.env]}}\n")
    (mount / "app" / "compose.yaml").write_text(
        "include: [{path: base.yaml}]\n"
        "services:\n  a:\n    image: x\n    env_file: [ok.env, {path: /etc/shadow}, '${HOME}/x.env']\n")
    repo = _project.Repository("app", "g", 6336, str(mount))
    from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
    with pytest.raises(InvalidInput) as err:
        _project.check_referenced_files(repo, [str(mount / "app" / "compose.yaml")])
    message = err.value.msg
    assert "env_file /etc/shadow: outside the repository's mount" in message
    assert "env_file ../../h/app/.env: outside" in message  # found through the include
    assert "${HOME}/x.env: a path with variables cannot be checked" in message
    assert "ok.env" not in message and "include base.yaml" not in message


def test_a_failing_up_reports_what_was_already_done_and_the_function_decides(tmp_path, fake_runner, monkeypatch):
    from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "Rediaccfile").write_text("up() { :; }\n")
    repo = _project.Repository("app", "g", 6336, str(tmp_path))
    monkeypatch.setattr(_repo_app, "is_up", lambda runner, repo: False)
    fake_runner.answer(["bash", "-c"], "started\n")
    answer = fake_runner.run

    def run(argv, **kwargs):  # the second Rediaccfile's up() exits 4
        if kwargs["cwd"].endswith("/b"):
            raise LockboxError("bash failed", cmd=argv, rc=4, stdout="", stderr="db not ready\n")
        return answer(argv, **kwargs)
    monkeypatch.setattr(fake_runner, "run", run)
    with pytest.raises(LockboxError) as err:
        _repo_app.up(fake_runner, repo, {})
    assert err.value.msg.startswith("up() of %s/b/Rediaccfile failed (exit 4): db not ready" % tmp_path)
    assert err.value.actions == [{"action": "up", "detail": "up() of %s/a/Rediaccfile" % tmp_path}]
    script = fake_runner.calls[0][2]
    assert script.startswith("source ./Rediaccfile\n") and "set -e" not in script


def test_a_fork_is_not_up_on_its_parent_s_stamp(tmp_path, fake_runner):
    """The fork's volume holds the parent's up stamp; the fork's own containers do not exist yet."""
    (tmp_path / "Rediaccfile").write_text("up() { :; }\n")
    (tmp_path / ".rediacc").mkdir()
    parent = _project.Repository("app", "g", 6336, str(tmp_path))
    (tmp_path / _project.UP_STAMP).write_text(json.dumps({"fingerprint": _project.fingerprint(str(tmp_path)),
                                                          "network_id": 6336}))
    for network_id in (6336, 6400):
        fake_runner.answer_api("/var/run/rediacc/docker-%d.sock" % network_id, "GET", "/version", {"Version": "26"})
        fake_runner.answer_api("/var/run/rediacc/docker-%d.sock" % network_id, "GET", "/containers/json?all=1", [])
    assert _repo_app.is_up(fake_runner, parent)
    fork = _project.Repository("app:try", "h", 6400, str(tmp_path))
    assert not _repo_app.is_up(fake_runner, fork)


def _compose_config_fake(fake_runner, services_by_project):
    """docker compose config --format json of projects named by their directory; records each call's env."""
    seen = []

    def config(argv, **kwargs):
        assert argv[:2] == ["docker", "compose"] and argv[-3:] == ["config", "--format", "json"], argv
        project = kwargs["cwd"].rsplit("/", 1)[1]
        seen.append((project, {k: v for k, v in kwargs["env"].items() if k.endswith("_IP")}))
        model = {"name": project, "services": {n: {"image": "x"} for n in services_by_project[project]}}
        return type("R", (), {"stdout": json.dumps(model)})()
    fake_runner.run = config
    return seen


def test_two_projects_of_one_repository_never_share_an_ip(tmp_path, fake_runner):
    services = {"shop": ["web", "db"], "blog": ["web2", "cache"]}
    for project, names in services.items():
        (tmp_path / project).mkdir()
        (tmp_path / project / "compose.yaml").write_text(
            "services:\n" + "".join("  %s: {image: x}\n" % n for n in names))
    repo = _project.Repository("app", "g", 6336, str(tmp_path))
    _compose_config_fake(fake_runner, services)
    shop = _project.plan_slots(fake_runner, repo, str(tmp_path / "shop"), [], {})[0]
    blog = _project.plan_slots(fake_runner, repo, str(tmp_path / "blog"), [], {})[0]
    assert shop == {"web": 0, "db": 1} and blog == {"web2": 2, "cache": 3}


def test_compose_is_asked_once_when_the_services_are_known_and_again_with_a_new_ip(tmp_path, fake_runner):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "compose.yaml").write_text("services:\n  web: {image: x}\n  db: {image: x}\n")
    repo = _project.Repository("app", "g", 6336, str(tmp_path))
    seen = _compose_config_fake(fake_runner, {"shop": ["web", "db"]})
    first_slots, _model, env = _project.plan_slots(fake_runner, repo, str(tmp_path / "shop"), [], {})
    # First up: compose learns the services, then builds the model again with their IPs.
    assert [ips for _p, ips in seen] == [{}, {"WEB_IP": "127.0.24.194", "DB_IP": "127.0.24.195"}]
    assert env["DB_IP"] == "127.0.24.195" and first_slots == {"web": 0, "db": 1}
    del seen[:]
    assert _project.plan_slots(fake_runner, repo, str(tmp_path / "shop"), [], {})[0] == first_slots
    assert [ips for _p, ips in seen] == [{"WEB_IP": "127.0.24.194", "DB_IP": "127.0.24.195"}]


def test_the_watchdog_never_follows_a_project_label_out_of_the_repository(tmp_path, fake_runner, monkeypatch):
    """com.docker.compose.project.working_dir is a label: anything may claim /etc; nothing is read or written there."""
    mount, outside = tmp_path / "mounts" / "g", tmp_path / "etc"
    (mount / "app").mkdir(parents=True)
    outside.mkdir()
    (outside / ".rediacc.json").write_text('{"restart": {"web": "always"}}')
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    (sockets / "docker-2816.sock").write_text("")
    layout = type("Layout", (), {"state_dir": str(tmp_path / "state")})()
    monkeypatch.setattr(_watchdog, "_mounts_by_network_id", lambda layout: {2816: str(mount)})
    container = {"id": "c1", "name": "p-web-1", "state": "exited", "exit_code": 1, "service": "web",
                 "project_dir": str(outside), "network_id": "2816"}
    monkeypatch.setattr(_project, "containers", lambda runner, network_id: [container])
    assert _watchdog.watchdog_pass(fake_runner, layout, socket_dir=str(sockets)) == []
    assert fake_runner.calls == []


def test_host_services_are_put_in_a_profile_compose_leaves_out(tmp_path, fake_runner):
    """A rediacc.install_as=systemd service has no image: compose is handed an override, never runs it."""
    (tmp_path / "hubapp").mkdir()
    (tmp_path / "hubapp" / "docker-compose.yml").write_text(
        "services:\n  web: {image: x}\n  hub:\n    command: [hub, start]\n    labels: [rediacc.install_as=systemd]\n")
    (tmp_path / "hubapp" / "docker-compose.override.yml").write_text("services:\n  web: {environment: {A: b}}\n")
    repo = _project.Repository("app", "g", 6336, str(tmp_path))
    handed = []

    def config(argv, **kwargs):
        override = argv[argv.index("config") - 1]
        handed.append((argv, json.loads(open(override).read())))
        return type("R", (), {"stdout": json.dumps({"name": "hubapp", "services": {"web": {"image": "x"}}})})()
    fake_runner.run = config
    slots = _project.plan_slots(fake_runner, repo, str(tmp_path / "hubapp"), [], {})[0]
    argv, override = handed[0]
    project = str(tmp_path / "hubapp")
    assert argv[:-4] == ["docker", "compose", "-f", project + "/docker-compose.yml",
                         "-f", project + "/docker-compose.override.yml", "-f"]
    assert override == {"services": {"hub": {"profiles": [_project.HOST_PROFILE]}}}
    assert not os.path.exists(argv[-4])  # the override is gone after the call
    assert slots == {"web": 0}


def test_projects_without_host_services_are_handed_to_compose_unchanged(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web: {image: x}\n")
    with _project.host_service_args(str(tmp_path), ["-p", "x"]) as args:
        assert args == ["-p", "x"]
    (tmp_path / "compose.yaml").write_text("services:\n  hub: {labels: {rediacc.install_as: systemd}}\n")
    with _project.host_service_args(str(tmp_path), ["--file=compose.yaml", "-p", "x"], "placeholder") as args:
        assert args[:4] == ["-p", "x", "-f", str(tmp_path / "compose.yaml")]
        override = json.loads(open(args[-1]).read())
        assert override["services"]["hub"] == {"profiles": ["rediacc-host"], "image": "placeholder"}
