"""Route names and router configurations (seed 000, Service naming and routing)."""

import json

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils import _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._errors import InvalidInput

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
