# SPDX-License-Identifier: GPL-3.0-or-later
"""The renet compose rewrite, on models as `docker compose config --format json` prints them."""

import copy
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose

APP = {
    "name": "app",
    "networks": {"default": {"name": "app_default"}},
    "services": {
        "web": {"image": "web:1", "ports": [{"target": 80, "published": "8080"}], "restart": "always",
                "labels": {"rediacc.service_port": "8080", "rediacc.network_id": "999"},
                "environment": {"DB_HOST": "db"}, "networks": {"default": None}},
        "db": {"image": "db:1", "volumes": [{"type": "bind", "source": "/m/g/data", "target": "/d"}],
               "deploy": {"restart_policy": {"condition": "on-failure"}}},
        "worker": {"image": "w:1", "labels": ["rediacc.checkpoint=true"], "cap_add": ["SYS_PTRACE"]},
    },
}


MOUNT = "/m/g"


def rewrite(model, network_id, recorded_slots=None, **kwargs):
    """The rewrite for a repository mounted at /m/g (no symbolic links: paths resolve to themselves)."""
    kwargs.setdefault("mount", MOUNT)
    kwargs.setdefault("project_dir", MOUNT + "/app")
    kwargs.setdefault("realpath", os.path.normpath)
    return _compose.rewrite(model, network_id, recorded_slots, **kwargs)


def test_service_ips_follow_compose_order_in_the_26():
    assert _compose.service_ip(6336, 0) == "127.0.24.194"
    assert _compose.service_ip(6336, 60) == "127.0.24.254"
    with pytest.raises(InvalidInput, match="at most 61"):
        _compose.service_ip(6336, 61)


def test_rewrite_forces_host_network_labels_env_and_names():
    out, slots, restart = rewrite(APP, 6336)
    assert slots == {"web": 0, "db": 1, "worker": 2}
    web = out["services"]["web"]
    assert web["network_mode"] == "host"
    assert "ports" not in web and "networks" not in web and "networks" not in out
    assert web["labels"] == {"rediacc.service_port": "8080", "rediacc.network_id": "6336",
                             "rediacc.service_ip": "127.0.24.194", "rediacc.service_name": "web"}
    assert web["environment"] == {"DB_HOST": "db", "SERVICE_IP": "127.0.24.194", "REDIACC_NETWORK_ID": "6336"}
    assert web["extra_hosts"] == ["db:127.0.24.195", "web:127.0.24.194", "worker:127.0.24.196"]
    assert web["cap_drop"] == ["NET_RAW"]
    assert "restart" not in web and "restart_policy" not in out["services"]["db"]["deploy"]
    assert restart == {"web": "always", "db": "on-failure"}


def test_input_model_is_not_modified():
    before = copy.deepcopy(APP)
    rewrite(APP, 6336)
    assert before == APP


def test_checkpoint_label_gets_exactly_the_criu_settings():
    out, _slots, _restart = rewrite(APP, 6336)
    worker = out["services"]["worker"]
    assert worker["cap_add"] == ["SYS_PTRACE", "CHECKPOINT_RESTORE"]
    assert worker["security_opt"] == ["apparmor=unconfined"]
    assert worker["userns_mode"] == "host"
    assert "cap_add" not in out["services"]["web"] and "userns_mode" not in out["services"]["db"]


def test_recorded_slots_never_move_when_services_are_added_or_removed():
    model = {"services": {"new": {"image": "n"}, "db": {"image": "d"}}}
    out, slots, _restart = rewrite(model, 2816, recorded_slots={"web": 0, "db": 1})
    assert slots == {"db": 1, "new": 0}
    assert out["services"]["db"]["environment"]["SERVICE_IP"] == "127.0.11.3"


@pytest.mark.parametrize(("deploy", "policy"), [
    ({"condition": "any"}, "always"), ({}, "always"), ({"condition": "none"}, None),
    ({"condition": "on-failure", "max_attempts": 3}, "on-failure:3"), ({"condition": "on-failure"}, "on-failure")])
def test_deploy_restart_policies_in_docker_terms(deploy, policy):
    _out, _slots, restart = rewrite({"services": {"a": {"image": "x", "deploy": {"restart_policy": deploy}}}}, 2816)
    assert restart == ({"a": policy} if policy else {})


def test_user_network_mode_is_overwritten_and_extra_hosts_are_kept():
    model = {"services": {"a": {"image": "x", "network_mode": "bridge", "extra_hosts": ["mirror:10.0.0.5"]},
                          "b": {"image": "y", "network_mode": "none", "extra_hosts": {"db.example": "192.0.2.7"}}}}
    out, _slots, _restart = rewrite(model, 2816)
    assert out["services"]["a"]["network_mode"] == "host" and out["services"]["b"]["network_mode"] == "host"
    assert out["services"]["a"]["extra_hosts"] == ["mirror:10.0.0.5", "a:127.0.11.2", "b:127.0.11.3"]
    assert out["services"]["b"]["extra_hosts"] == ["db.example:192.0.2.7", "a:127.0.11.2", "b:127.0.11.3"]


def test_an_extra_hosts_entry_naming_a_service_is_an_error_naming_both():
    model = {"services": {"web": {"image": "x"}, "cli": {"image": "y", "extra_hosts": ["web=10.1.1.1"]}}}
    expected = r"service cli: extra_hosts entry web=10\.1\.1\.1 clashes with the service web"
    with pytest.raises(InvalidInput, match=expected):
        rewrite(model, 2816)


def bind(source, **extra):
    return {"image": "x", "volumes": [dict({"type": "bind", "source": source, "target": "/t"}, **extra)]}


def test_a_checkpointed_service_never_gets_net_admin():
    """NET_ADMIN in the host network namespace: a DNAT rule of its own would pass the loopback guard."""
    model = {"services": {"bad": {"image": "x", "labels": {"rediacc.checkpoint": "true"}, "cap_add": ["NET_ADMIN"]}}}
    with pytest.raises(InvalidInput, match="cap_add NET_ADMIN is not allowed"):
        rewrite(model, 2816)


HOSTILE = [
    ({"privileged": True}, "privileged: true"),
    ({"pid": "host"}, "pid: host"),
    ({"ipc": "host"}, "ipc: host"),
    ({"uts": "host"}, "uts: host"),
    ({"cgroup": "host"}, "cgroup: host"),
    ({"userns_mode": "host"}, "userns_mode: host"),
    ({"pid": "container:abc"}, "joins a container"),
    ({"devices": ["/dev/sda:/dev/sda"]}, "devices"),
    ({"cap_add": ["SYS_ADMIN"]}, "cap_add SYS_ADMIN"),
    ({"cap_add": ["ALL"]}, "cap_add ALL"),
    ({"cap_add": ["cap_net_admin"]}, "cap_add NET_ADMIN"),
    ({"cap_add": ["NET_RAW"]}, "cap_add NET_RAW"),
    ({"security_opt": ["seccomp=unconfined"]}, "security_opt seccomp=unconfined"),
    ({"security_opt": ["apparmor:unconfined"]}, "security_opt apparmor:unconfined"),
    ({"security_opt": ["label=disable"]}, "security_opt label=disable"),
    ({"security_opt": ["systempaths=unconfined"]}, "systempaths=unconfined"),
    ({"volumes_from": ["container:other"]}, "volumes_from container:other"),
    ({"volumes_from": ["ghost"]}, "volumes_from ghost"),
    ({"use_api_socket": True}, "use_api_socket is not allowed"),
    ({"gpus": "all"}, "gpus is not allowed"),
    ({"runtime": "runsc"}, "runtime is not allowed"),
    ({"device_cgroup_rules": ["c 1:3 mr"]}, "device_cgroup_rules is not allowed"),
    ({"sysctls": {"net.ipv4.ip_forward": "1"}}, "sysctl net.ipv4.ip_forward"),
    ({"post_start": [{"command": "id", "privileged": True}]}, "privileged post_start"),
    ({"deploy": {"resources": {"reservations": {"devices": [{"capabilities": ["gpu"]}]}}}}, "reservations.devices"),
    ({"build": {"context": "/etc"}}, "build context /etc"),
    ({"build": {"context": "/m/g/app", "additional_contexts": {"x": "/root"}}}, "additional build context x /root"),
    ({"build": {"context": "/m/g/app", "ssh": ["default"]}}, "build ssh default"),
    ({"build": {"context": "/m/g/app", "cache_to": ["type=local,dest=/etc/cron.d"]}}, "build cache_to /etc/cron.d"),
    ({"build": {"context": "/m/g/app", "cache_from": ["type=local,src=/m/h/cache"]}}, "build cache_from /m/h/cache"),
    ({"volumes": ["/etc:/host-etc:ro"]}, "bind mount of /etc: outside"),
    ({"env_file": ["/m/h/app/.env"]}, "env_file /m/h/app/.env"),
    ({"env_file": [{"path": "/etc/rediacc/secret.env", "required": True}]}, "env_file /etc/rediacc/secret.env"),
    (bind("/"), "bind mount of /: outside the repository's mount /m/g"),
    (bind("/etc/shadow"), "bind mount of /etc/shadow"),
    (bind("//etc//./shadow"), "bind mount of //etc//./shadow (resolves to /etc/shadow)"),
    (bind("/m/g/app/../../h/data"), "resolves to /m/h/data"),
    (bind("/m/h"), "bind mount of /m/h"),
    (bind("/m/g"), "private .rediacc directory"),
    (bind("/m/g/.rediacc/docker/data"), "private .rediacc directory"),
    (bind("/var/run/rediacc/docker-6336.sock"), "docker-6336.sock"),
    (bind("/run"), "bind mount of /run"),
    (bind("/var/lib"), "bind mount of /var/lib"),
    (bind("/etc/localtime"), "bind mount of /etc/localtime"),  # harmless only read-only
    ({"volumes": [{"type": "npipe", "source": "x", "target": "/t"}]}, "volume type npipe"),
    ({"volumes": [{"type": "volume", "source": "undeclared", "target": "/t"}]}, "volume undeclared is not declared"),
]


@pytest.mark.parametrize(("service", "problem"), HOSTILE)
def test_hostile_services_are_refused_unless_unsafe(service, problem):
    model = {"services": {"bad": dict(service, image="x")}}
    before = copy.deepcopy(model)
    with pytest.raises(InvalidInput) as err:
        rewrite(model, 2816)
    assert problem in err.value.msg and "service bad" in err.value.msg and "--unsafe" in err.value.msg
    out, _slots, _restart = rewrite(model, 2816, unsafe=True)
    assert out["services"]["bad"]["network_mode"] == "host"
    assert model == before


@pytest.mark.parametrize(("top", "problem"), [
    ({"volumes": {"v": {"driver_opts": {"type": "none", "o": "bind", "device": "/etc"}}}},
     "volume v: driver_opts device /etc"),
    ({"volumes": {"v": {"driver_opts": {"type": "none", "o": "rbind,ro", "device": "/m/g/../h"}}}}, "resolves to /m/h"),
    ({"volumes": {"v": {"driver_opts": {"type": "ext4", "device": "/dev/vda1"}}}}, "driver_opts type ext4"),
    ({"volumes": {"v": {"driver_opts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/x"}}}}, "type nfs"),
    ({"volumes": {"v": {"driver": "rexray"}}}, "driver rexray"),
    ({"secrets": {"s": {"file": "/etc/shadow"}}}, "secret s: file /etc/shadow"),
    ({"configs": {"c": {"file": "/m/h/app/config"}}}, "config c: file /m/h/app/config"),
    ({"models": {"m": {"model": "ai/x"}}}, "models is not allowed"),
])
def test_hostile_top_level_entries_are_refused(top, problem):
    model = dict(top, services={"ok": {"image": "x"}})
    with pytest.raises(InvalidInput) as err:
        rewrite(model, 2816)
    assert problem in err.value.msg


def test_symlinks_are_resolved_on_the_host(tmp_path):
    mount, other = tmp_path / "mounts" / "g", tmp_path / "mounts" / "h"
    (mount / "app").mkdir(parents=True)
    (other / "data").mkdir(parents=True)
    (mount / "app" / "link").symlink_to(other / "data")
    (mount / "app" / "inside").symlink_to(mount / "app")
    model = {"services": {"a": bind(str(mount / "app" / "link" / "sub"))}}
    with pytest.raises(InvalidInput, match="resolves to %s/sub" % (other / "data")):
        _compose.rewrite(model, 2816, mount=str(mount), project_dir=str(mount / "app"))
    model = {"services": {"a": bind(str(mount / "app" / "inside" / "www"))}}
    out, _slots, _restart = _compose.rewrite(model, 2816, mount=str(mount), project_dir=str(mount / "app"))
    assert out["services"]["a"]["volumes"][0]["source"] == str(mount / "app" / "www")  # handed on resolved


def test_what_stays_inside_the_repository_is_fine():
    model = {"services": {
        "ok": {"image": "x", "cap_add": ["CHOWN", "NET_BIND_SERVICE"], "security_opt": ["no-new-privileges:true"],
               "env_file": ["/m/g/app/.env"], "volumes_from": ["db"], "build": {"context": "/m/g/app"},
               "sysctls": {"kernel.shm_rmid_forced": "1"}, "volumes": [
                   {"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data"},
                   {"type": "bind", "source": "/m/g/data", "target": "/data"},
                   {"type": "bind", "source": "/usr/share/zoneinfo/UTC", "target": "/etc/localtime", "read_only": True},
                   {"type": "tmpfs", "target": "/tmp"}, {"type": "volume", "target": "/anon"},
                   "/m/g/logs:/logs", "/cache"]},
        "db": {"image": "y", "labels": {"rediacc.checkpoint": "true"}, "cap_add": ["SYS_PTRACE"]}},
        "volumes": {"pgdata": {}, "scratch": {"driver_opts": {"type": "tmpfs", "device": "tmpfs"}},
                    "shared": {"driver": "local",
                               "driver_opts": {"type": "none", "o": "bind", "device": "/m/g/shared"}}},
        "secrets": {"s": {"file": "/m/g/app/secret.txt"}, "e": {"environment": "TOKEN"}}}
    out, _slots, _restart = rewrite(model, 2816)
    volumes = out["services"]["ok"]["volumes"]
    assert volumes[1]["source"] == "/m/g/data"
    assert volumes[5:] == [{"type": "bind", "source": "/m/g/logs", "target": "/logs", "read_only": False},
                           {"type": "volume", "target": "/cache"}]


def test_empty_models_are_refused():
    with pytest.raises(InvalidInput, match="no services"):
        rewrite({"services": {}}, 2816)


def test_hub_labels_stay_and_lockbox_labels_are_lockbox_s():
    model = {"services": {"web": {"image": "x", "labels": {
        "rediacc.install_as": "systemd", "rediacc.hub.route.code": "8080", "rediacc.hub.templates.a.image": "i",
        "rediacc.network_id": "1", "rediacc.hubx": "dropped", "rediacc.service_ip": "10.0.0.1"}}}}
    labels = rewrite(model, 6336)[0]["services"]["web"]["labels"]
    assert labels == {"rediacc.install_as": "systemd", "rediacc.hub.route.code": "8080",
                      "rediacc.hub.templates.a.image": "i", "rediacc.network_id": "6336",
                      "rediacc.service_ip": "127.0.24.194", "rediacc.service_name": "web"}
