"""The renet compose rewrite, on models as `docker compose config --format json` prints them."""

import copy

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils import _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._errors import InvalidInput

APP = {
    "name": "app",
    "networks": {"default": {"name": "app_default"}},
    "services": {
        "web": {"image": "web:1", "ports": [{"target": 80, "published": "8080"}], "restart": "always",
                "labels": {"rediacc.service_port": "8080", "rediacc.network_id": "999"},
                "environment": {"DB_HOST": "db"}, "networks": {"default": None}},
        "db": {"image": "db:1", "volumes": [{"type": "bind", "source": "/mnt/rediacc/mounts/g/data", "target": "/d"}],
               "deploy": {"restart_policy": {"condition": "on-failure"}}},
        "worker": {"image": "w:1", "labels": ["rediacc.checkpoint=true"], "cap_add": ["SYS_PTRACE"]},
    },
}


def test_service_ips_follow_compose_order_in_the_26():
    assert _compose.service_ip(6336, 0) == "127.0.24.194"
    assert _compose.service_ip(6336, 60) == "127.0.24.254"
    with pytest.raises(InvalidInput, match="at most 61"):
        _compose.service_ip(6336, 61)


def test_rewrite_forces_host_network_labels_env_and_names():
    out, slots, restart = _compose.rewrite(APP, 6336)
    assert slots == {"web": 0, "db": 1, "worker": 2}
    web = out["services"]["web"]
    assert web["network_mode"] == "host"
    assert "ports" not in web and "networks" not in web and "networks" not in out
    assert web["labels"] == {"rediacc.service_port": "8080", "rediacc.network_id": "6336",
                             "rediacc.service_ip": "127.0.24.194", "rediacc.service_name": "web"}
    assert web["environment"] == {"DB_HOST": "db", "SERVICE_IP": "127.0.24.194", "REDIACC_NETWORK_ID": "6336"}
    assert web["extra_hosts"] == ["db:127.0.24.195", "web:127.0.24.194", "worker:127.0.24.196"]
    assert "restart" not in web and "restart_policy" not in out["services"]["db"]["deploy"]
    assert restart == {"web": "always", "db": "on-failure"}


def test_input_model_is_not_modified():
    before = copy.deepcopy(APP)
    _compose.rewrite(APP, 6336)
    assert before == APP


def test_checkpoint_label_gets_exactly_the_criu_settings():
    out, _slots, _restart = _compose.rewrite(APP, 6336)
    worker = out["services"]["worker"]
    assert worker["cap_add"] == ["SYS_PTRACE", "CHECKPOINT_RESTORE", "NET_ADMIN"]
    assert worker["security_opt"] == ["apparmor=unconfined"]
    assert worker["userns_mode"] == "host"
    assert "cap_add" not in out["services"]["web"] and "userns_mode" not in out["services"]["db"]


def test_recorded_slots_never_move_when_services_are_added_or_removed():
    model = {"services": {"new": {"image": "n"}, "db": {"image": "d"}}}
    out, slots, _restart = _compose.rewrite(model, 2816, recorded_slots={"web": 0, "db": 1})
    assert slots == {"db": 1, "new": 0}
    assert out["services"]["db"]["environment"]["SERVICE_IP"] == "127.0.11.3"


@pytest.mark.parametrize("service, problem", [
    ({"privileged": True}, "privileged"),
    ({"pid": "host"}, "pid: host"),
    ({"ipc": "host"}, "ipc: host"),
    ({"volumes": [{"type": "bind", "source": "/", "target": "/host"}]}, "system path /"),
    ({"volumes": [{"type": "bind", "source": "/etc", "target": "/e"}]}, "/etc"),
    ({"volumes": [{"type": "bind", "source": "/etc/shadow", "target": "/s"}]}, "/etc/shadow"),
    ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}, "docker.sock"),
    ({"volumes": [{"type": "bind", "source": "/proc", "target": "/p"}]}, "/proc"),
    ({"volumes": [{"type": "bind", "source": "/srv/../etc", "target": "/p"}]}, "/srv/../etc"),
])
def test_hostile_services_are_refused_unless_unsafe(service, problem):
    model = {"services": {"bad": dict(service, image="x")}}
    with pytest.raises(InvalidInput) as err:
        _compose.rewrite(model, 2816)
    assert problem in err.value.msg and "--unsafe" in err.value.msg
    out, _slots, _restart = _compose.rewrite(model, 2816, unsafe=True)
    assert out["services"]["bad"]["network_mode"] == "host"


def test_named_volumes_and_repo_binds_are_fine():
    model = {"services": {"ok": {"image": "x", "volumes": [
        {"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data"},
        {"type": "bind", "source": "/mnt/rediacc/mounts/g/data", "target": "/data"},
        "/mnt/rediacc/mounts/g/etc:/etc/app"]}}}
    _compose.rewrite(model, 2816)


def test_empty_models_are_refused():
    with pytest.raises(InvalidInput, match="no services"):
        _compose.rewrite({"services": {}}, 2816)
