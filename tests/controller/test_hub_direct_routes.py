# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's direct routes through the real router: Debian's Caddy with the sites hub_install writes.

A session's first request passes the Hub and brings the browser its route token; once the router
has the token, the user's requests (HTTP and WebSocket) go straight to the environment, without the
Hub and without the Hub's cookies; /_hub/ stays the Hub's; a forged token and a logged-out one
lead back through the Hub. The Hub's environments are stood in for (ReadyEnvironments), the
router is real: reloads are ``caddy reload`` of the same files.
"""

import asyncio
import http.client
import json
import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import CommandResult
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_routes as _hub_routes
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub

from .conftest import free_port
from .test_hub_login import LABELS, ReadyEnvironments, _login, _serve, _settings, upstream_app

NO_TABLE = '{"nftables": []}'


class RouterRunner:
    """The Hub's commands, on this machine: the router's reload is a real ``caddy reload`` of the test's
    Caddyfile; the activity table is answered as nft answers without one (tests/unit covers it)."""

    def __init__(self, caddyfile, admin):
        self.caddyfile, self.admin, self.calls = caddyfile, admin, []

    def run(self, argv, stdin=None, ok_rcs=(0,), env=None, cwd=None):
        self.calls.append(list(argv))
        if argv == ["systemctl", "is-active", "caddy.service"]:
            return CommandResult(argv, 0, "active\n", "")
        if argv == ["systemctl", "reload", "caddy.service"]:
            subprocess.run(["caddy", "reload", "--config", self.caddyfile, "--adapter", "caddyfile", "--address",
                            "127.0.0.1:%d" % self.admin], check=True, capture_output=True)
            return CommandResult(argv, 0, "", "")
        if argv[:2] == ["nft", "-f"] or argv[:3] == ["nft", "-j", "list"]:
            return CommandResult(argv, 0, NO_TABLE, "")
        raise AssertionError("no answer for %r" % (argv,))


@pytest.fixture
def upstream():
    with upstream_app() as port:
        yield port


@pytest.fixture
def router(tmp_path, oidc_provider, upstream):
    """Caddy with the Hub's sites for code.hub.test (plain HTTP here), the Hub, its direct routes."""
    if not shutil.which("caddy"):
        raise RuntimeError("caddy is missing: run scripts/setup (it installs Debian's caddy)")
    port, admin, hub_port = free_port(), free_port(), free_port()
    routes_dir = tmp_path / "routes"
    sites = _hub_install.caddy_file({"code": upstream}, "hub.test", "internal", "127.0.0.1:%d" % hub_port,
                                    str(routes_dir))
    # The same sites, served over plain HTTP on a free port (TLS is the router's business, not this test's).
    sites = sites.replace("code.hub.test {", "http://code.hub.test:%d {" % port).replace("\ttls internal\n", "")
    (tmp_path / "hub.caddy").write_text(sites)
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text("{\n\tadmin 127.0.0.1:%d\n}\nimport %s\n" % (admin, tmp_path / "hub.caddy"))
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    caddy = subprocess.Popen(["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port)
        config, options, oauth = _settings(oidc_provider)
        config = _hub.parse_labels(dict(LABELS, **{"rediacc.hub.route.code": str(upstream)}))
        routes = _hub_routes.DirectRoutes(RouterRunner(str(caddyfile), admin), [upstream], str(tmp_path / "hub.caddy"),
                                          map_file=str(routes_dir / "sessions.map"), group="no-such-group")
        environments = ReadyEnvironments()
        served = _serve(config, dict(options, port=hub_port), oauth, environments, routes=routes, port=hub_port)
        hub = next(served, None)
        try:
            yield dict(hub, router_port=port, routes=routes)
        finally:
            served.close()
    finally:
        caddy.terminate()
        caddy.wait(timeout=10)


def _wait(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("caddy does not listen on %d" % port)


def _through_router(router, path, cookies):
    connection = http.client.HTTPConnection("127.0.0.1", router["router_port"], timeout=30)
    connection.request("GET", path, headers={"Host": "code.hub.test", "Accept": "application/json",
                                             "Cookie": "; ".join("%s=%s" % kv for kv in cookies.items())})
    response = connection.getresponse()
    body = response.read().decode()
    set_cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
    return response.status, body, set_cookies


def _applied(routes, timeout=30):
    deadline = time.monotonic() + timeout
    while routes.applied != routes.wanted:
        assert time.monotonic() < deadline, "the router never got the new map"
        time.sleep(0.05)


def test_an_established_session_goes_straight_to_the_environment(router):
    browser, environments, routes = router["browser"], router["environments"], router["routes"]
    _login(browser)
    session = browser.cookies["code.hub.test"]["__Host-hub_session"]
    cookies = {"app": "1", "__Host-hub_session": session}
    through_hub = len(environments.touched)  # the login's own landing page passed the Hub
    # The first request passes the Hub, which answers it and hands out the route token.
    status, body, set_cookies = _through_router(router, "/echo", cookies)
    assert status == 200 and json.loads(body)["headers"]["X-Forwarded-Proto"] == "https"  # the Hub's proxy
    through_hub += 1
    assert len(environments.touched) == through_hub
    route = [c for c in set_cookies if c.startswith("__Host-hub_route=")]
    assert len(route) == 1 and "Secure" in route[0] and "HttpOnly" in route[0] and "Path=/" in route[0]
    assert "Domain" not in route[0]
    token = route[0].split("=", 1)[1].split(";")[0]
    _applied(routes)
    cookies["__Host-hub_route"] = token
    # Then the router alone: the Hub sees nothing, the environment none of the Hub's cookies.
    for _round in range(3):
        status, body, set_cookies = _through_router(router, "/echo?x=1", cookies)
        seen = json.loads(body)
        assert status == 200 and seen["path"] == "/echo?x=1" and set_cookies == []
        assert seen["headers"]["X-Forwarded-Proto"] == "http"  # Caddy's, not the Hub's
        assert [c.strip() for c in seen["headers"]["Cookie"].split(";") if c.strip()] == ["app=1"]
    assert len(environments.touched) == through_hub

    async def talk():
        from aiohttp import ClientSession
        async with ClientSession() as client, client.ws_connect(
                "http://127.0.0.1:%d/ws" % router["router_port"],
                headers={"Host": "code.hub.test", "Cookie": "; ".join("%s=%s" % kv for kv in cookies.items())}) as ws:
            await ws.send_str("one")
            return (await ws.receive()).data
    assert asyncio.run(talk()) == "echo:one"
    assert len(environments.touched) == through_hub  # the WebSocket went straight there too
    # /_hub/ is always the Hub's, token or not.
    status, body, _c = _through_router(router, "/_hub/api/progress", cookies)
    assert status == 200 and "steps" in json.loads(body)
    # A forged token leads through the Hub, which gives this session its real token again.
    status, _body, set_cookies = _through_router(router, "/echo", dict(cookies, **{"__Host-hub_route": "x" * 43}))
    through_hub += 1
    assert status == 200 and len(environments.touched) == through_hub
    assert any(c.startswith("__Host-hub_route=%s;" % token) for c in set_cookies)
    # Logging out withdraws the token from the router before the answer: the old token leads to
    # the Hub, which without a session sends the browser to log in.
    status, _body, set_cookies = _through_router(router, "/_hub/logout", cookies)
    assert status == 302 and any(c.startswith("__Host-hub_route=") and "Max-Age=0" in c for c in set_cookies)
    with open(routes.map_file) as handle:
        assert token not in handle.read()
    status, _body, _c = _through_router(router, "/echo", {"__Host-hub_route": token})
    assert status == 302 and len(environments.touched) == through_hub


def test_the_kernel_counts_what_the_browser_sends_not_what_it_receives():
    """The activity table on this machine's kernel (a network namespace of its own): three requests
    answered with 1 MiB each count 3, the client's ACKs of those 3 MiB nothing, bob's idle rule 0."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._tools import nft as _nft
    script = os.path.join(os.path.dirname(__file__), "..", "unit", "fixtures", "record_nft_activity.sh")
    out = subprocess.run(["unshare", "-n", "bash", script], check=True, capture_output=True, text=True).stdout
    assert _nft.parse_activity(out) == {"alice": 3, "bob": 0}


def test_a_grant_that_races_a_stop_gives_no_route(router):
    """The environment stops between the Hub's proxying and the grant: no token, nothing in the map."""
    browser, environments, routes = router["browser"], router["environments"], router["routes"]
    _login(browser)
    cookies = {"__Host-hub_session": browser.cookies["code.hub.test"]["__Host-hub_session"]}
    routes.withdraw("alice")  # the login's landing page got her one: start without
    answers = iter(["127.0.0.1", None])
    environments.address = lambda _user: next(answers, None)
    status, _body, set_cookies = _through_router(router, "/echo", cookies)
    assert status == 200 and not [c for c in set_cookies if c.startswith("__Host-hub_route=")]
    _applied(routes)
    assert "alice" not in routes.grants
    with open(routes.map_file) as handle:
        assert [line for line in handle if not line.startswith("#")] == []
