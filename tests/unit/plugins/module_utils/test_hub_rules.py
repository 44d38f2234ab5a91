# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's label and command rules (_rules/hub): every kind of input, good and hostile."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub

SEED_LABELS = [
    "rediacc.install_as=systemd",
    "rediacc.hub.route.code=8080",
    "rediacc.hub.route.term=7681",
    "rediacc.hub.image=ghcr.io/your-org/devcontainer:latest",
    "rediacc.hub.command=ttyd --port 7681 bash & exec openvscode-server --host __SERVICE_IP__ --port 8080",
    "rediacc.hub.user=vscode",
    "rediacc.hub.docker=per-user",
    "rediacc.hub.limits.cpu=200%",
    "rediacc.hub.limits.memory=8G",
    "rediacc.hub.checkpoint=true",
    "rediacc.hub.hook.checkpoint.pre_dump=start-desktop.sh stop",
    "traefik.http.routers.hub-code.rule=Host(`code.example.com`)",
]


def test_seed_labels_give_one_complete_default_template():
    config = hub.parse_labels(hub.labels_of({"labels": SEED_LABELS}))
    assert config["routes"] == {"code": 8080, "term": 7681}
    assert config["default_template"] == "default"
    assert config["templates"] == {"default": {
        "image": "ghcr.io/your-org/devcontainer:latest",
        "command": "ttyd --port 7681 bash & exec openvscode-server --host __SERVICE_IP__ --port 8080",
        "user": "vscode", "workspace": "/workspace", "shm_size": 1 << 30, "docker": "per-user", "checkpoint": True,
        "mode": "persistent", "limits.cpu": "200%", "limits.memory": "8G",
        "hook.checkpoint.pre_dump": "start-desktop.sh stop"}}


def test_named_templates_start_from_the_flat_labels():
    labels = {"rediacc.hub.route.app": "3000", "rediacc.hub.user": "1000:1000",
              "rediacc.hub.limits.memory": "2G", "rediacc.hub.template": "lite",
              "rediacc.hub.templates.lite.image": "node:22-alpine",
              "rediacc.hub.templates.lite.mode": "ephemeral",
              "rediacc.hub.templates.python.image": "python:3.12-slim",
              "rediacc.hub.templates.python.user": "1000:100",
              "rediacc.hub.templates.python.shm_size": "256M"}
    config = hub.parse_labels(labels)
    assert sorted(config["templates"]) == ["lite", "python"]  # no flat image: no implicit default
    assert config["default_template"] == "lite"
    assert config["templates"]["lite"]["mode"] == "ephemeral"
    assert config["templates"]["lite"]["user"] == "1000:1000"
    assert config["templates"]["python"]["user"] == "1000:100"
    assert config["templates"]["python"]["shm_size"] == 256 << 20
    assert config["templates"]["python"]["limits.memory"] == "2G"


@pytest.mark.parametrize(("label", "value", "named"), [
    ("rediacc.hub.route.Code", "8080", "route prefix"),
    ("rediacc.hub.route.code", "80800", "port between"),
    ("rediacc.hub.route.code", "8080; rm", "port between"),
    ("rediacc.hub.imgae", "x", "unknown Hub label"),
    ("rediacc.hub.image", "ghcr.io/org/dev:1 --privileged", "image reference"),
    ("rediacc.hub.image", "$(id)", "image reference"),
    ("rediacc.hub.user", "root; id", "user or uid"),
    ("rediacc.hub.workspace", "relative/dir", "absolute path"),
    ("rediacc.hub.workspace", "/", "root directory"),
    ("rediacc.hub.workspace", "/work/../etc", "'..'"),
    ("rediacc.hub.shm_size", "lots", "not a size"),
    ("rediacc.hub.docker", "host", "per-user or empty"),
    ("rediacc.hub.mode", "forever", "persistent or ephemeral"),
    ("rediacc.hub.checkpoint", "yes please", "true or false"),
    ("rediacc.hub.limits.cpu", "2", "CPUQuota"),
    ("rediacc.hub.limits.cpu", "0%", "CPUQuota"),
    ("rediacc.hub.limits.memory", "8G\nExecStartPre=/bin/sh", "MemoryMax"),
    ("rediacc.hub.limits.memory", "-1", "MemoryMax"),
    ("rediacc.hub.templates.Py.image", "python:3", "template name"),
    ("rediacc.hub.templates.py.privileged", "true", "unknown template field"),
    ("rediacc.hub.template", "missing", "names no template"),
    ("rediacc.hub.command", "a\0b", "text of at most"),
])
def test_every_bad_label_is_named(label, value, named):
    labels = {"rediacc.hub.route.code": "8080", "rediacc.hub.image": "ghcr.io/org/dev:1", label: value}
    with pytest.raises(InvalidInput) as caught:
        hub.parse_labels(labels)
    assert named in caught.value.msg
    assert label in caught.value.msg or named == "names no template"


def test_all_problems_are_reported_at_once():
    with pytest.raises(InvalidInput) as caught:
        hub.parse_labels({"rediacc.hub.image": "BAD IMAGE", "rediacc.hub.mode": "x"})
    assert "image reference" in caught.value.msg and "persistent or ephemeral" in caught.value.msg
    assert "no rediacc.hub.route" in caught.value.msg


@pytest.mark.parametrize(("name", "key"), [("alice", "alice"), ("Alice.Smith", "alice.smith"),
                                           ("bob@example.com", "bob@example.com"), ("1000", "1000"),
                                           ("a+b_c-d", "a+b_c-d")])
def test_user_names_accepted(name, key):
    assert hub.check_username(name) == key


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc", ".hidden", "a..b", "a b", "x" * 65, "al\nice",
                                  "-rf", "alice\0", None, "ünï"])
def test_user_names_refused(name):
    with pytest.raises(InvalidInput):
        hub.check_username(name)


DURATIONS = [("0", 0), ("30m", 1800), ("1h30m", 5400), ("90s", 90), ("2d", 172800)]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations(text, seconds):
    assert hub.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "-5m", "1h 30m", "0m", "30 minutes", "1e3s"])
def test_bad_durations(text):
    with pytest.raises(InvalidInput):
        hub.parse_duration(text)


def test_command_expansion_both_markers():
    assert hub.expand_command("run --host __SERVICE_IP__ --also ${SERVICE_IP}", "127.0.128.2") \
        == "run --host 127.0.128.2 --also 127.0.128.2"


SEED_COMMAND = ["hub", "start", "--docker-socket=/var/run/rediacc/docker-2816.sock", "--network-id=2816",
                "--port=7112", "--base-domain=Example.com", "--workspace-dir=/mnt/rediacc/mounts/g/devbox/ws",
                "--idle-timeout=30m", "--checkpoint"]


def test_seed_command_parses():
    options = hub.parse_start(hub.host_argv(SEED_COMMAND), mount="/mnt/rediacc/mounts/g/")
    assert options["network_id"] == 2816 and options["port"] == 7112 and options["checkpoint"] is True
    assert options["base_domain"] == "example.com" and options["idle_timeout"] == 1800
    assert options["workspace_dir"] == "/mnt/rediacc/mounts/g/devbox/ws"


@pytest.mark.parametrize(("change", "named"), [
    ("--workspace-dir=/mnt/rediacc/mounts/other/ws", "outside the repository"),
    ("--workspace-dir=/mnt/rediacc/mounts/g/../other", "'..'"),
    ("--port=0", "not a port"),
    ("--network-id=40000", "networkId"),
    ("--base-domain=exa mple.com", "DNS name"),
    ("--idle-timeout=soon", "duration"),
    ("--container-image=UPPER/case", "image reference"),
    ("--privileged", "unrecognized arguments"),
    ("--port=seven", "invalid int value"),
])
def test_bad_commands_named(change, named):
    key = change.split("=")[0]
    argv = [a for a in SEED_COMMAND[2:] if not a.startswith(key + "=")] + [change]
    with pytest.raises(InvalidInput) as caught:
        hub.parse_start(argv, mount="/mnt/rediacc/mounts/g")
    assert named in caught.value.msg


def test_only_hub_start_is_a_host_service_command():
    with pytest.raises(InvalidInput, match="hub start"):
        hub.host_argv(["sh", "-c", "id"])
    assert hub.host_argv("hub start --port=1") == ["--port=1"]


def test_host_service_label():
    assert hub.is_host_service({"labels": ["rediacc.install_as=systemd"]})
    assert hub.is_host_service({"labels": {"rediacc.install_as": "Systemd "}})
    assert not hub.is_host_service({"labels": {"rediacc.install_as": "docker"}})
    assert not hub.is_host_service({})


def test_only_hub_variables_are_read_from_an_env_file():
    text = """# the Hub's settings
HUB_OAUTH_CLIENT_ID=lockbox
export HUB_OAUTH_SCOPES="openid profile"
HUB_SESSION_SECRET='abc=def'
LD_PRELOAD=/mnt/rediacc/mounts/g/evil.so
PATH=/tmp/evil
hub_lower=x
HUB_=empty name
HUB_SPACED = yes
not a pair
"""
    assert hub.parse_env_file(text) == {"HUB_OAUTH_CLIENT_ID": "lockbox", "HUB_OAUTH_SCOPES": "openid profile",
                                        "HUB_SESSION_SECRET": "abc=def", "HUB_SPACED": "yes"}
    assert hub.is_hub_variable("HUB_ADMIN_USERS") and not hub.is_hub_variable("LD_PRELOAD")
