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


def test_custom_domains_of_traefik_labels_route_the_grand_never_a_fork(monkeypatch):
    labels = {"traefik.http.routers.api.rule": "Host(`api.example.com`) || Host(`API.example.org`, `bad..name`)",
              "traefik.http.services.api.loadbalancer.server.port": "9090", "rediacc.service_port": "8080"}
    from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
    assert _compose.custom_domains(labels) == ["api.example.com", "api.example.org"]
    out, _slots, _restart = _compose.rewrite({"services": {"api": {"image": "x", "labels": labels}}}, 2816,
                                             mount="/m/g", project_dir="/m/g/app")
    api_labels = out["services"]["api"]["labels"]
    assert api_labels["rediacc.custom_domains"] == "api.example.com api.example.org"
    assert api_labels["rediacc.custom_port"] == "9090"
    container = {"service": "api", "service_ip": "127.0.11.2", "service_port": "8080",
                 "custom_domains": "api.example.com", "custom_port": "9090"}
    fork = dict(container, service_ip="127.0.11.130")
    other = dict(container, service_ip="127.0.11.66")
    services = [({"name": "shop", "network_id": 2816}, container),
                ({"name": "shop:try", "network_id": 2944, "parent": "shop", "tag": "try"}, fork),
                ({"name": "zoo", "network_id": 2880}, other)]
    monkeypatch.setattr(_routes, "_running_services", lambda *a: iter(services))
    routes, _forwards, conflicts = _routes.route_table(None, "/state", "m", "example.com")
    custom = [r for r in routes if r.get("custom")]
    assert [(r["host"], r["repository"], r["upstream"]) for r in custom] == [
        ("api.example.com", "shop", "127.0.11.2:9090")]
    assert [(c["repository"], c["host"], c["taken_by"]) for c in conflicts] == [("zoo", "api.example.com", "shop/api")]
    assert "api-fork-try.shop.m.example.com" in [r["host"] for r in routes]


def test_traefik_routes_share_one_wildcard_per_repository_with_its_forks():
    record, fork = {"name": "shop"}, {"name": "shop:try", "parent": "shop", "tag": "try"}
    routes = [{"host": _routes.route_host("web", r, "m", "example.com"), "upstream": "127.0.11.2:80",
               "wildcard": _routes.wildcard_of(r, "m", "example.com")} for r in (record, fork)]
    config = json.loads(_routes.render_traefik(routes, cert_resolver="dns"))
    wanted = {"certResolver": "dns", "domains": [{"main": "shop.m.example.com", "sans": ["*.shop.m.example.com"]}]}
    assert [router["tls"] for router in config["http"]["routers"].values()] == [wanted, wanted]
    assert json.loads(_routes.render_traefik(routes))["http"]["routers"]["web-shop-m-example-com"]["tls"] == {}
