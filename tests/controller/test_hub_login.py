# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's login against a real OpenID provider (oidc-provider): the whole OAuth2 round trip.

The Hub's server runs here on 127.0.0.1; a small browser follows redirects, keeps cookies per
host (the Hub's __Host- cookies too, which a library jar would drop over plain HTTP), fills the
provider's own login and consent pages, and sends https://*.hub.test requests to the Hub with
the right Host header. The users' environments are a recording stand-in here: spawning them
needs a guest (molecule/hub).
"""

import asyncio
import contextlib
import http.client
import json
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from browser import Browser  # tests/hub/browser.py (conftest puts tests/hub on the path)

from ansible_collections.lockbox.fleet.plugins.module_utils._core import tokens as _tokens
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_server as _hub_server
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub

from . import chromium

LABELS = {"rediacc.hub.route.code": "8080", "rediacc.hub.route.term": "7681", "rediacc.hub.image": "img:1",
          "rediacc.hub.templates.lite.image": "img:2"}
SECRET = bytes(range(32))
ROOT = Path(__file__).resolve().parents[2]


class Environments:
    """Records what the Hub asks of the environments; two users exist."""

    def __init__(self):
        self.templates, self.stopped, self.ensured, self.hibernated = {}, [], [], []

    def choose_template(self, user, name):
        self.templates[user] = name

    def status(self):
        return [{"user": u, "status": "stopped" if u in self.stopped else "ready", "template": "default",
                 "idle_seconds": 0} for u in ("alice", "bob")]

    def progress(self, user):
        status = "stopped" if user in self.stopped else "hibernated" if user in self.hibernated else "starting"
        return {"status": status, "steps": ["x"], "ready": False, "error": None}

    def stop(self, user):
        self.stopped.append(user)

    def hibernate(self, user):
        self.hibernated.append(user)

    def address(self, user):
        return None

    def ensure(self, user):
        self.ensured.append(user)

    def touch(self, user):
        pass

    def sample(self):
        self.sampled = True


def _settings(oidc_provider, **extra):
    """The Hub's configuration, options and provider settings for the test provider."""
    provider = oidc_provider["url"]
    oauth = _hub.oauth_settings(dict({
        "HUB_OAUTH_CLIENT_ID": "lockbox", "HUB_OAUTH_CLIENT_SECRET": oidc_provider["client_secret"],
        "HUB_OAUTH_AUTHORIZE_URL": provider + "/auth", "HUB_OAUTH_TOKEN_URL": provider + "/token",
        "HUB_OAUTH_USERINFO_URL": provider + "/me", "HUB_OAUTH_USERINFO_PATH": "preferred_username",
        "HUB_OAUTH_SCOPES": "openid profile"}, **extra))
    return _hub.parse_labels(LABELS), {"base_domain": "hub.test", "port": 0, "workspace_dir": "/nonexistent"}, oauth


@pytest.fixture
def hub(oidc_provider):
    """A Hub on 127.0.0.1 (callbacks on each route host), the recording environments, the audit records."""
    yield from _serve(*_settings(oidc_provider, HUB_ALLOWED_GROUPS="dev", HUB_ADMIN_USERS="carol"))


@pytest.fixture
def hub_one_callback(oidc_provider):
    """A Hub whose provider knows one callback host (HUB_OAUTH_REDIRECT_URI on login.hub.test)."""
    yield from _serve(*_settings(oidc_provider, HUB_OAUTH_REDIRECT_URI="https://login.hub.test/_hub/callback"))


@contextlib.contextmanager
def _running(app, unix_socket=None, ssl_context=None, port=0):
    """``app`` served from an event loop of its own thread, on 127.0.0.1 (yields the port) or a unix socket."""
    from aiohttp import web
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.UnixSite(runner, unix_socket) if unix_socket else \
        web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield None if unix_socket else site._server.sockets[0].getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _serve(config, options, oauth, environments=None, *, routes=None, port=0):
    environments, audit = environments or Environments(), []
    server = _hub_server.Hub(config, options, oauth, SECRET, environments, routes=routes,
                             audit=lambda user, kind, **fields: audit.append((user, kind, fields)))
    with _running(server.app(), port=port) as bound:
        yield {"browser": Browser(bound), "environments": environments, "audit": audit, "port": bound}


def _login(browser, user="alice", host="code.hub.test", query=""):
    return browser.follow("https://%s/_hub/login%s" % (host, query), user=user)


def test_login_sets_a_host_only_session_and_lands_on_next(hub):
    browser = hub["browser"]
    status, _headers, _body, _cookies, url = _login(browser, query="?next=/projects/1%3Fa%3Db")
    assert url == "https://code.hub.test/projects/1?a=b" and status == 202  # the waiting page of the environment
    session = [c for c in browser_set_cookies(browser, "code.hub.test") if c.startswith("__Host-hub_session=")]
    assert session, browser.cookies
    status, _h, body, _c = browser.request("https://code.hub.test/_hub/api/status")
    assert status == 200 and json.loads(body)["user"] == "alice" and not json.loads(body)["admin"]
    assert hub["environments"].ensured == ["alice"]
    assert ("alice", "login", {"admin": False, "host": "code.hub.test"}) in hub["audit"]


def browser_set_cookies(browser, host):
    return ["%s=%s" % kv for kv in browser.cookies.get(host, {}).items()]


def test_session_cookie_attributes(hub):
    browser = hub["browser"]
    seen = []
    original = browser.request

    def recording(url, method="GET", form=None, headers=None):
        answer = original(url, method, form, headers)
        seen.extend(answer[3])
        return answer
    browser.request = recording
    _login(browser)
    cookie = next(c for c in seen if c.startswith("__Host-hub_session="))
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path", "samesite", "max-age"} <= attributes
    assert "domain" not in attributes and "Path=/" in cookie and "SameSite=Lax" in cookie


def test_logout_removes_the_session_the_way_a_browser_accepts(hub):
    browser = hub["browser"]
    _login(browser)
    status, _h, _b, cookies = browser.request("https://code.hub.test/_hub/logout")
    removal = next(c for c in cookies if c.startswith("__Host-hub_session="))
    assert status == 302 and "Secure" in removal and "Path=/" in removal and "Max-Age=0" in removal
    assert "__Host-hub_session" not in browser.cookies["code.hub.test"]
    status, _h, _b, _c = browser.request("https://code.hub.test/_hub/api/status")
    assert status == 401
    assert ("alice", "logout", {}) in hub["audit"]


def test_a_session_is_valid_only_on_its_own_host(hub):
    browser = hub["browser"]
    _login(browser)
    stolen = browser.cookies["code.hub.test"]["__Host-hub_session"]
    browser.cookies["term.hub.test"] = {"__Host-hub_session": stolen}
    status, headers, _b, _c = browser.request("https://term.hub.test/anything")
    assert status == 302 and headers["Location"].startswith("/_hub/login")


@pytest.mark.parametrize("host", ["evil.test", "code.hub.test.evil.test", "hub.test", "other.hub.test", ""])
def test_hosts_the_hub_does_not_serve_are_refused(hub, host):
    status, _h, _b, _c = hub["browser"].request("https://code.hub.test/_hub/login", headers={"Host": host})
    assert status == 421


def test_a_wrong_state_is_refused(hub):
    browser = hub["browser"]
    callback = browser.follow("https://code.hub.test/_hub/login", stop_at=lambda u: "/_hub/callback" in u)
    query = parse_qs(urlsplit(callback).query)
    forged = "https://code.hub.test/_hub/callback?" + urlencode({"code": query["code"][0], "state": "forged"})
    status, _h, body, cookies = browser.request(forged)
    assert status == 400 and "state does not match" in body and not any("hub_session" in c for c in cookies)
    assert any(kind == "login-denied" for _u, kind, _f in hub["audit"])


def test_a_replayed_code_is_refused(hub):
    browser = hub["browser"]
    callback = browser.follow("https://code.hub.test/_hub/login", stop_at=lambda u: "/_hub/callback" in u)
    attempt = dict(browser.cookies["code.hub.test"])
    status, _h, _b, _c = browser.request(callback)
    assert status == 302  # signed in
    browser.cookies["code.hub.test"] = attempt  # an attacker with the URL and the login cookie
    status, _h, body, cookies = browser.request(callback)
    assert status == 401 and "token endpoint refused" in body and not any("hub_session" in c for c in cookies)


def test_the_provider_gets_a_pkce_challenge_and_a_code_without_the_verifier_is_worthless(hub, oidc_provider):
    browser = hub["browser"]
    _s, headers, _b, _c = browser.request("https://code.hub.test/_hub/login")
    authorize = parse_qs(urlsplit(headers["Location"]).query)
    assert authorize["code_challenge_method"] == ["S256"] and len(authorize["code_challenge"][0]) == 43
    callback = browser.follow("https://code.hub.test/_hub/login", stop_at=lambda u: "/_hub/callback" in u)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    parts = urlsplit(oidc_provider["url"])
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("POST", "/token", body=urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": "https://code.hub.test/_hub/callback",
        "client_id": "lockbox", "client_secret": oidc_provider["client_secret"]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    answer = connection.getresponse()
    assert answer.status == 400 and json.loads(answer.read())["error"] == "invalid_grant"


@pytest.mark.parametrize("target", ["https://evil.test/", "//evil.test/x", "/\\evil.test", "http:evil.test",
                                    "javascript:alert(1)", "/ok\r\nSet-Cookie: x=y"])
def test_next_never_leaves_the_host(hub, target):
    _status, _h, _b, _c, url = _login(hub["browser"], query="?" + urlencode({"next": target}))
    assert url == "https://code.hub.test/"


def test_a_user_outside_the_allowed_groups_is_refused(hub):
    status, _h, body, _cookies, _url = _login(hub["browser"], user="mallory")
    assert status == 403 and "none of the allowed groups" in body
    assert "__Host-hub_session" not in hub["browser"].cookies.get("code.hub.test", {})
    assert ("mallory", "login-denied", {"reason": "user mallory is in none of the allowed groups"}) in hub["audit"]


def test_admins_see_everyone_and_users_only_themselves(hub):
    alice, carol = hub["browser"], Browser(hub["port"])
    _login(alice)
    _login(carol, user="carol")
    _s, _h, body, _c = alice.request("https://code.hub.test/_hub/api/status")
    assert [e["user"] for e in json.loads(body)["environments"]] == ["alice"]
    _s, _h, body, _c = carol.request("https://code.hub.test/_hub/api/status")
    assert json.loads(body)["admin"] and [e["user"] for e in json.loads(body)["environments"]] == ["alice", "bob"]
    status, _h, _b, _c = alice.request("https://code.hub.test/_hub/api/stop/bob", method="POST")
    assert status == 403 and hub["environments"].stopped == []
    status, _h, _b, _c = alice.request("https://code.hub.test/_hub/api/stop/alice", method="POST",
                                       headers={"Origin": "https://evil.test"})
    assert status == 403 and hub["environments"].stopped == []
    status, _h, _b, _c = carol.request("https://code.hub.test/_hub/api/stop/bob", method="POST")
    assert status == 200 and hub["environments"].stopped == ["bob"]
    status, _h, page, _c = alice.request("https://code.hub.test/_hub/dashboard")
    assert status == 200 and "alice" in page and "bob" not in page


def test_the_template_survives_the_round_trip_and_unknown_ones_are_refused(hub):
    _login(hub["browser"], query="?template=lite")
    assert hub["environments"].templates == {"alice": "lite"}
    status, _h, body, _c = hub["browser"].request("https://code.hub.test/_hub/login?template=nope")
    assert status == 400 and "unknown template" in body


def test_one_callback_host_hands_the_session_over_with_a_one_time_ticket(hub_one_callback):
    browser = hub_one_callback["browser"]
    seen = []
    original = browser.request

    def recording(url, method="GET", form=None, headers=None):
        seen.append(url)
        return original(url, method, form, headers)
    browser.request = recording
    status, _h, _b, _c, url = browser.follow("https://term.hub.test/_hub/login?next=/shell")
    assert url == "https://term.hub.test/shell" and status == 202
    ticket_url = next(u for u in seen if "/_hub/session?ticket=" in u)
    assert "__Host-hub_session" in browser.cookies["term.hub.test"]
    assert "__Host-hub_session" in browser.cookies["login.hub.test"]
    status, _h, _b, _c = original(ticket_url)  # a second use of the ticket
    assert status == 400
    ticket = parse_qs(urlsplit(ticket_url).query)["ticket"][0]
    status, _h, _b, _c = Browser(hub_one_callback["port"]).request(
        "https://code.hub.test/_hub/session?" + urlencode({"ticket": ticket}))
    assert status == 400  # a ticket for term.hub.test is worthless on code.hub.test


def test_tokens_are_bound_to_their_purpose_and_expire():
    now = time.time()
    token = _tokens.sign(SECRET, "ticket", {"user": "alice"}, now, 60)
    assert _tokens.verify(SECRET, "ticket", token, now)["user"] == "alice"
    assert _tokens.verify(SECRET, "session", token, now) is None
    assert _tokens.verify(SECRET, "ticket", token, now + 61) is None
    assert _tokens.verify(bytes(32), "ticket", token, now) is None
    body, signature = token.split(".")
    assert _tokens.verify(SECRET, "ticket", body[:-2] + "xx." + signature, now) is None
    assert _tokens.verify(SECRET, "ticket", "garbage", now) is None


def test_root_s_socket_lists_and_stops_environments(tmp_path):
    """renet hub status / stop talk to the running Hub on a unix socket, through the runtime's own Runner."""

    from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
    from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
    environments, audit = Environments(), []
    server = _hub_server.Hub(_hub.parse_labels(LABELS), {"base_domain": "hub.test"}, _hub.oauth_settings({
        "HUB_OAUTH_CLIENT_ID": "c", "HUB_OAUTH_CLIENT_SECRET": "s", "HUB_OAUTH_AUTHORIZE_URL": "http://p/auth",
        "HUB_OAUTH_TOKEN_URL": "http://p/token", "HUB_OAUTH_USERINFO_URL": "http://p/me",
        "HUB_OAUTH_USERINFO_PATH": "sub"}), SECRET, environments,
        audit=lambda user, kind, **fields: audit.append((user, kind, fields)))
    socket_path = str(tmp_path / "hub.sock")
    with _running(server.admin_app(), unix_socket=socket_path):
        answer = Runner().api(socket_path, "GET", "/status")
        assert [e["user"] for e in answer.data["environments"]] == ["alice", "bob"]
        original = _hub_server.ADMIN_SOCKET
        _hub_server.ADMIN_SOCKET = socket_path
        try:
            assert _hub_install.stop_user(Runner(), "Bob") == {"user": "bob", "action": "stop", "status": "stopped"}
            assert _hub_install.stop_user(Runner(), "alice", "hibernate") == {"user": "alice", "action": "hibernate",
                                                                              "status": "hibernated"}
            with pytest.raises(InvalidInput, match="no environment of user carol"):
                _hub_install.stop_user(Runner(), "carol")
            with pytest.raises(InvalidInput, match="not accepted"):
                _hub_install.stop_user(Runner(), "../etc")
        finally:
            _hub_server.ADMIN_SOCKET = original
        assert environments.stopped == ["bob"] and ("bob", "stop", {"by": "root"}) in audit
        assert environments.hibernated == ["alice"] and ("alice", "hibernate", {"by": "root"}) in audit


class ReadyEnvironments(Environments):
    """Every user's environment answers on 127.0.0.1; who was marked active, and how often."""

    def __init__(self):
        super().__init__()
        self.touched = []

    def address(self, user):
        return "127.0.0.1"

    def touch(self, user):
        self.touched.append(user)


@pytest.fixture
def upstream():
    """A user's environment: echoes what reached it, streams, and echoes WebSocket messages."""
    with upstream_app() as port:
        yield port


@contextlib.contextmanager
def upstream_app():
    """The ``upstream`` fixture's server, for other test modules too: yields its port."""
    from aiohttp import web

    async def echo(request):
        return web.json_response({"headers": dict(request.headers), "path": request.path_qs,
                                  "body": (await request.read()).decode()})

    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for index in range(3):
            await response.write(b"chunk %d\n" % index)
        return response

    async def socket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("echo:" + message.data)
        return ws
    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", socket)
    with _running(app) as port:
        yield port


def test_the_proxy_passes_http_and_websockets_and_keeps_the_hub_s_cookies(oidc_provider, upstream):
    from aiohttp import ClientSession
    config, options, oauth = _settings(oidc_provider)
    config = _hub.parse_labels(dict(LABELS, **{"rediacc.hub.route.code": str(upstream)}))
    environments = ReadyEnvironments()
    served = _serve(config, options, oauth, environments)
    hub = next(served)
    try:
        browser = hub["browser"]
        _login(browser)
        session = browser.cookies["code.hub.test"]["__Host-hub_session"]
        browser.cookies["code.hub.test"]["app"] = "1"
        status, _h, body, _c = browser.request("https://code.hub.test/echo?x=1", method="POST", form={"a": "b"})
        seen = json.loads(body)
        assert status == 200 and seen["path"] == "/echo?x=1" and seen["body"] == "a=b"
        assert seen["headers"]["Cookie"] == "app=1"  # the Hub's own cookies never reach the environment
        assert seen["headers"]["X-Forwarded-Host"] == "code.hub.test"
        status, _h, body, _c = browser.request("https://code.hub.test/stream")
        assert body == "chunk 0\nchunk 1\nchunk 2\n"
        touched_before = len(environments.touched)

        async def talk():
            async with ClientSession() as client, client.ws_connect(
                    "http://127.0.0.1:%d/ws" % hub["port"],
                    headers={"Host": "code.hub.test", "Cookie": "__Host-hub_session=" + session}) as ws:
                answers = []
                for text in ("one", "two"):
                    await ws.send_str(text)
                    answers.append((await ws.receive()).data)
                return answers
        assert asyncio.run(talk()) == ["echo:one", "echo:two"]
        # the browser's two messages and the upgrade request are activity; the environment's answers are not
        assert len(environments.touched) - touched_before == 3
    finally:
        served.close()


# Fills the provider's login and consent pages as a person would (one submit per page), and says
# where the browser is once it is back on a Hub host.
SIGN_IN = """(() => {
  if (document.readyState !== "complete") return "";
  if (location.host.endsWith(".hub.test")) return location.href;
  const form = document.forms[0];
  if (!form || form.dataset.sent) return "";
  form.dataset.sent = "1";
  if (form.elements.login) { form.elements.login.value = %s; form.elements.password.value = "any"; }
  const button = form.querySelector("button[type=submit], input[type=submit], button");
  if (button) button.click(); else form.submit();
  return "";
})()"""
SCREENSHOT = ROOT / ".build" / "screenshots" / "hub-dashboard.png"


def test_the_dashboard_in_chromium(oidc_provider, tmp_path):
    """Log in with Debian's headless Chromium, see your environment (and not another user's), stop it."""
    class Figures(Environments):
        def status(self):
            return [dict(e, template="default", idle_seconds=42, stops_in_seconds=1758, disk_bytes=183500800,
                         containers=2, images=3) for e in super().status()]
    environments = Figures()
    config, options, oauth = _settings(oidc_provider, HUB_ALLOWED_GROUPS="dev", HUB_ADMIN_USERS="carol")
    audit = []
    server = _hub_server.Hub(config, options, oauth, SECRET, environments,
                             audit=lambda user, kind, **fields: audit.append((user, kind, fields)))
    (tmp_path / "profile").mkdir()
    with _running(server.app(), ssl_context=chromium.tls_context(str(tmp_path))) as hub_port, \
            chromium.tunnel(hub_port) as proxy_port:
        page = chromium.Page(proxy_port, str(tmp_path / "profile"))
        try:
            page.goto("https://code.hub.test/_hub/dashboard")
            where = page.wait_for(SIGN_IN % json.dumps("alice"), timeout=60)
            assert where == "https://code.hub.test/_hub/dashboard"
            rows = page.wait_for("[...document.querySelectorAll('tr')].slice(1).map(r => r.innerText)")
            assert len(rows) == 1
            assert rows[0].split("\t")[:8] == ["alice", "ready", "default", "42", "1758", "175.0 MiB", "2", "3"]
            assert page.evaluate("document.body.innerText.includes('bob')") is False
            cookies = page.call("Network.getAllCookies")["cookies"]
            secure = {c["name"] for c in cookies if c["domain"] == "code.hub.test" and c["secure"]}
            assert secure == {"__Host-hub_session"}
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shot = page.screenshot()
            assert shot.startswith(b"\x89PNG")
            SCREENSHOT.write_bytes(shot)  # docs/images/hub-dashboard.png is a copy of one
            page.evaluate("document.querySelector('button[data-user=alice]').click()")
            page.wait_for("document.querySelector('tr:nth-child(2) td:nth-child(2)')?.innerText === 'stopped'")
            assert environments.stopped == ["alice"] and ("alice", "stop", {"target": "alice"}) in audit
            assert page.evaluate("document.querySelector('button[data-user]')") is None
        finally:
            page.close()
