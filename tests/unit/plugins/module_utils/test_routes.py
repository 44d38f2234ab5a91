# SPDX-License-Identifier: GPL-3.0-or-later
"""Route names and router configurations (docs/contract.md, names and routes)."""

import json

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes

ROUTES = [{"host": "myapp.marketing.server-1.example.com", "upstream": "127.0.24.194:8080"},
          {"host": "myapp-fork-staging.marketing.server-1.example.com", "upstream": "127.0.25.2:8080"}]


def test_route_host_for_repository_and_fork():
    assert _routes.route_host("myapp", {"name": "marketing"}, "server-1", "example.com") == \
        "myapp.marketing.server-1.example.com"
    fork = {"name": "marketing:staging", "parent": "marketing", "tag": "staging"}
    assert _routes.route_host("myapp", fork, "server-1", "example.com") == \
        "myapp-fork-staging.marketing.server-1.example.com"
    assert _routes.route_host("My_App", {"name": "Shop.EU"}, "Server_1", "example.com") == \
        "my-app.shop-eu.server-1.example.com"


@pytest.mark.parametrize(("machine", "domain"), [("", "example.com"), ("server-1", ""), ("server-1", "bad..com"),
                                                 ("server-1", "a b.com"), ("-", "example.com")])
def test_router_settings_refuse_bad_names(machine, domain):
    with pytest.raises(InvalidInput):
        _routes.check_router_settings(machine, domain)


def test_caddyfile_has_one_site_per_route_with_internal_tls():
    text = _routes.render_caddy(ROUTES)
    assert "myapp.marketing.server-1.example.com {\n\ttls internal\n\treverse_proxy 127.0.24.194:8080\n}" in text
    assert "tls internal" not in _routes.render_caddy(ROUTES, tls="acme")


def test_traefik_file_provider_config():
    config = json.loads(_routes.render_traefik(ROUTES))
    router = config["http"]["routers"]["myapp-fork-staging-marketing-server-1-example-com"]
    assert router["rule"] == "Host(`myapp-fork-staging.marketing.server-1.example.com`)"
    service = config["http"]["services"][router["service"]]
    assert service["loadBalancer"]["servers"] == [{"url": "http://127.0.25.2:8080"}]


def test_ports_label_parsing():
    assert _routes._ports("8080") == [8080]
    assert _routes._ports("5432, 3306") == [5432, 3306]
    assert _routes._ports("http") == []
    assert _routes._ports(None) == []


def test_forward_ruleset_dnats_declared_ports_and_guards_loopback():
    from ansible_collections.lockbox.fleet.plugins.module_utils._tools import nft as _nft
    text = _nft.forward_ruleset([{"protocol": "tcp", "port": 5432, "address": "127.0.24.195"},
                                 {"protocol": "udp", "port": 53, "address": "127.0.24.196"}])
    assert text.startswith("table ip lockbox_forward\ndelete table ip lockbox_forward\n")
    assert '\t\tiifname != "lo" tcp dport 5432 dnat to 127.0.24.195:5432\n' in text
    assert '\t\tiifname != "lo" udp dport 53 dnat to 127.0.24.196:53\n' in text
    assert text.index("ct status dnat accept") < text.index("ip daddr 127.0.0.0/8 drop")


def test_forward_ruleset_is_loaded_once(tmp_path, fake_runner):
    fake_runner.silent(["nft", "-f", "-"])
    from ansible_collections.lockbox.fleet.plugins.module_utils._tools import nft as _nft
    ruleset = _nft.forward_ruleset([{"protocol": "tcp", "port": 5432, "address": "127.0.24.195"}])
    localnet = tmp_path / "route_localnet"
    localnet.write_text("0\n")
    applied = str(tmp_path / "run" / "forward.nft")
    assert _nft.apply_forwards(fake_runner, ruleset, applied, str(localnet)) is True
    assert fake_runner.calls == [["nft", "-f", "-"]] and fake_runner.stdins == [ruleset.encode()]
    assert localnet.read_text() == "1\n"
    assert _nft.apply_forwards(fake_runner, ruleset, applied, str(localnet)) is False
    assert len(fake_runner.calls) == 1


def test_a_host_port_goes_to_the_first_repository_by_name(monkeypatch):
    beta_web = {"service": "web", "service_ip": "127.0.11.66", "service_port": "8080", "tcp_ports": "8080"}
    alpha_web = {"service": "web", "service_ip": "127.0.11.2", "service_port": None, "tcp_ports": "8080,9000",
                 "udp_ports": "53"}
    services = [({"name": "beta", "network_id": 2880}, beta_web), ({"name": "alpha", "network_id": 2816}, alpha_web)]
    monkeypatch.setattr(_routes, "_running_services", lambda *a: iter(services))
    routes, forwards, conflicts = _routes.route_table(None, "/state", "m", "example.com")
    assert [r["host"] for r in routes] == ["web.beta.m.example.com"]
    assert [(f["protocol"], f["port"], f["repository"]) for f in forwards] == \
        [("tcp", 8080, "alpha"), ("tcp", 9000, "alpha"), ("udp", 53, "alpha")]
    assert conflicts[0]["repository"] == "beta" and conflicts[0]["taken_by"] == "alpha/web"
    traefik = json.loads(_routes.render_traefik(routes, forwards))
    assert traefik["tcp"]["routers"]["tcp-8080"]["rule"] == "HostSNI(`*`)"
    assert traefik["udp"]["services"]["udp-53"]["loadBalancer"]["servers"] == [{"address": "127.0.11.2:53"}]
