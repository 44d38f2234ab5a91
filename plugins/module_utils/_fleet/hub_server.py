# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``renet hub start``: the Hub's HTTP server (login, sessions, spawn progress, proxy, API).

Login is the OAuth2 authorization code flow with ``state`` and PKCE S256 against any
provider (``HUB_OAUTH_*``). The login attempt (state, verifier, where to go after) is a
signed cookie on the host that started it; the session is a signed ``__Host-`` cookie per
host name. With ``HUB_OAUTH_REDIRECT_URI`` (one callback host registered at the provider) a
login started on another route host goes through the callback host and comes back with a
one-time ticket, so every route host gets its own host-only cookie.

A request for a host the Hub does not serve is refused (421) before anything else: the host
name decides which user port is reached and which cookie is valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import json
import logging
import os
import signal
import time
import traceback
from urllib.parse import urlencode, urlsplit

from ansible_collections.lockbox.fleet.plugins.module_utils._core import tokens as _tokens
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_routes as _hub_routes
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub

try:
    from aiohttp import ClientError, ClientSession, ClientTimeout, WSMsgType, web
    HAS_AIOHTTP = True
except ImportError:  # hosts get python3-aiohttp from the hub role; the collection imports without it
    HAS_AIOHTTP = False

LOG = logging.getLogger("lockbox.hub")
ADMIN_SOCKET = "/run/rediacc/hub.sock"
SESSION_COOKIE = "__Host-hub_session"
LOGIN_COOKIE = "__Host-hub_login"
SESSION_LIFETIME = 12 * 3600
LOGIN_LIFETIME = 600
TICKET_LIFETIME = 60
IDLE_INTERVAL = 30.0
SAMPLE_INTERVAL = 30.0
HUB_COOKIES = (SESSION_COOKIE, LOGIN_COOKIE, _hub_routes.ROUTE_COOKIE)
# Hop-by-hop headers (RFC 9110 7.6.1) and what the proxy sets itself.
HOP_HEADERS = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "host", "content-length"))


class Hub:
    """One Hub: its configuration, the users' environments, and the HTTP application."""

    def __init__(self, config, options, oauth, secret, environments, *, audit=None, clock=time.time, routes=None):
        self.config, self.options, self.oauth, self.secret = config, options, oauth, secret
        self.environments, self.clock = environments, clock
        # The router's direct routes (hub_routes.DirectRoutes): None, or not enabled, is every request through here.
        self.routes, self.direct = routes, False
        self.audit = audit or (lambda user, kind, **fields: None)
        self.used_tickets = {}
        self.http, self.tasks = None, []
        redirect = urlsplit(oauth["redirect_uri"]) if oauth["redirect_uri"] else None
        self.callback_host = redirect.netloc.lower() if redirect else None

    # -- the application ---------------------------------------------------------------------

    def app(self):
        async def only_served_hosts(request, handler):
            return await self._only_served_hosts(request, handler)
        app = web.Application(middlewares=[web.middleware(only_served_hosts)])
        app.router.add_get("/_hub/health", self.health)
        app.router.add_get("/_hub/login", self.login)
        app.router.add_get("/_hub/callback", self.callback)
        app.router.add_get("/_hub/session", self.session_from_ticket)
        app.router.add_get("/_hub/logout", self.logout)
        app.router.add_get("/_hub/api/status", self.api_status)
        app.router.add_get("/_hub/api/progress", self.api_progress)
        app.router.add_post("/_hub/api/stop/{user}", self.api_stop)
        app.router.add_get("/_hub/dashboard", self.dashboard)
        app.router.add_route("*", "/{tail:.*}", self.serve_user)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app):
        self.http = ClientSession(timeout=ClientTimeout(total=30))
        if self.routes is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.routes.start)
                self.direct = self.routes.enabled
            except (LockboxError, OSError):  # every request through the Hub then: slower, never wrong
                traceback.print_exc()
                LOG.error("the router's direct routes are off: every request passes the Hub")
        self.tasks = [asyncio.create_task(self._sample_loop())]
        if self.options.get("idle_timeout"):
            self.tasks.append(asyncio.create_task(self._idle_loop()))

    async def _stop(self, _app):
        for task in self.tasks:
            task.cancel()
        if self.routes is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.routes.remove)
        await self.http.close()

    async def _sample_loop(self):
        """The dashboard's figures, every SAMPLE_INTERVAL (disk use is a walk of the user's directories)."""
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, self.environments.sample)
            if self.direct:
                await loop.run_in_executor(None, self._prune_routes)
            await asyncio.sleep(SAMPLE_INTERVAL)

    def _prune_routes(self):
        try:
            for user in self.routes.prune(self.clock(), self.environments.address):
                self.audit(user, "route-withdrawn")
        except (LockboxError, OSError):
            traceback.print_exc()

    async def _idle_loop(self):
        """Every IDLE_INTERVAL: environments idle for --idle-timeout hibernate (templates with checkpoint)
        or stop; their data stays."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(IDLE_INTERVAL)
            active = await loop.run_in_executor(None, self.routes.active_users) if self.direct else set()
            idle = await loop.run_in_executor(None, functools.partial(
                self.environments.idle_pass, self.clock(), IDLE_INTERVAL, active=active))
            for user in idle:
                self.audit(user, "idle-stop", idle_timeout=self.options["idle_timeout"])
                try:
                    await loop.run_in_executor(None, self.environments.hibernate, user)
                except Exception as exc:  # one user's failure must not end the loop for all
                    self.audit(user, "idle-stop-failed", error="%s: %s" % (type(exc).__name__, exc))
                    traceback.print_exc()

    def _served(self, host):
        name = (host or "").lower()
        return _hub.host_prefix(name, self.config["routes"], self.options["base_domain"]) is not None or (
            self.callback_host is not None and name == self.callback_host)

    async def _only_served_hosts(self, request, handler):
        if request.path == "/_hub/health":
            return await handler(request)
        if not self._served(request.host):
            return web.Response(status=421, text="this Hub does not serve the host %r\n" % request.host[:100])
        return await handler(request)

    # -- cookies -----------------------------------------------------------------------------

    def _set_cookie(self, response, name, value, max_age):
        # __Host-: Secure, Path=/, no Domain: the cookie belongs to exactly this host name.
        response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Lax")

    def _clear_cookie(self, response, name):
        # A browser takes a __Host- cookie, its removal included, only with Secure and Path=/.
        response.set_cookie(name, "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT", path="/", secure=True,
                            httponly=True, samesite="Lax")

    def session_of(self, request):
        """The session payload valid for this host, or None."""
        payload = _tokens.verify(self.secret, "session", request.cookies.get(SESSION_COOKIE), self.clock())
        if payload is None or payload.get("host") != request.host.lower():
            return None
        return payload

    def _session_response(self, location, host, user, admin, template):
        response = _redirect(location)
        token = _tokens.sign(self.secret, "session", {"user": user, "admin": admin, "host": host,
                                                      "template": template}, self.clock(), SESSION_LIFETIME)
        self._set_cookie(response, SESSION_COOKIE, token, SESSION_LIFETIME)
        return response

    # -- login -------------------------------------------------------------------------------

    async def health(self, _request):
        return web.json_response({"ok": True})

    def _redirect_uri(self, request):
        return self.oauth["redirect_uri"] or "https://%s/_hub/callback" % request.host.lower()

    async def login(self, request):
        host = request.host.lower()
        template = request.query.get("template") or ""
        if template and template not in self.config["templates"]:
            return web.Response(status=400, text="unknown template %r (known: %s)\n" % (
                template[:64], ", ".join(sorted(self.config["templates"]))))
        back = _tokens.verify(self.secret, "return", request.query.get("return"), self.clock())
        if back is None:
            back = {"host": host, "next": _hub.safe_next(request.query.get("next")), "template": template}
        if self.callback_host and host != self.callback_host:
            # The provider knows one callback: the attempt starts there and comes back with a ticket.
            token = _tokens.sign(self.secret, "return", back, self.clock(), LOGIN_LIFETIME)
            raise web.HTTPFound("https://%s/_hub/login?%s" % (self.callback_host, urlencode({"return": token})))
        state, verifier = _tokens.random_token(), _tokens.random_token(48)
        attempt = dict(back, state=state, verifier=verifier)
        query = {"response_type": "code", "client_id": self.oauth["client_id"],
                 "redirect_uri": self._redirect_uri(request), "state": state,
                 "code_challenge": _tokens.pkce_challenge(verifier), "code_challenge_method": "S256"}
        if self.oauth["scopes"]:
            query["scope"] = " ".join(self.oauth["scopes"])
        response = _redirect("%s%s%s" % (self.oauth["authorize_url"],
                                         "&" if "?" in self.oauth["authorize_url"] else "?", urlencode(query)))
        self._set_cookie(response, LOGIN_COOKIE,
                         _tokens.sign(self.secret, "login", attempt, self.clock(), LOGIN_LIFETIME), LOGIN_LIFETIME)
        return response

    def _denied(self, status, reason, user=None):
        self.audit(user or "-", "login-denied", reason=reason)
        return web.Response(status=status, text="login refused: %s\n" % reason)

    async def callback(self, request):
        attempt = _tokens.verify(self.secret, "login", request.cookies.get(LOGIN_COOKIE), self.clock())
        if attempt is None:
            return self._denied(400, "no login in progress in this browser (or it expired): start again")
        state = request.query.get("state") or ""
        if not _tokens.constant_equal(state, attempt["state"]):
            return self._denied(400, "the state does not match this browser's login")
        if "error" in request.query or not request.query.get("code"):
            return self._denied(401, "the provider answered %s" % (request.query.get("error") or "without a code"))
        try:
            user, groups = await self._identify(request, request.query["code"], attempt["verifier"])
        except (TimeoutError, InvalidInput, ClientError, ValueError) as exc:
            return self._denied(401, str(getattr(exc, "msg", exc))[:300])
        if not _hub.allowed(groups, self.oauth["allowed_groups"]):
            return self._denied(403, "user %s is in none of the allowed groups" % user, user)
        admin = user in self.oauth["admins"]
        self.audit(user, "login", admin=admin, host=attempt["host"])
        if attempt["template"]:
            self.environments.choose_template(user, attempt["template"])
        if attempt["host"] == request.host.lower():
            response = self._session_response(attempt["next"], attempt["host"], user, admin, attempt["template"])
        else:
            ticket = _tokens.sign(self.secret, "ticket", {"user": user, "admin": admin, "host": attempt["host"],
                                                          "next": attempt["next"], "template": attempt["template"],
                                                          "nonce": _tokens.random_token(16)},
                                  self.clock(), TICKET_LIFETIME)
            # Signed in on the callback host too (its dashboard), then handed over to the route host.
            response = self._session_response("https://%s/_hub/session?%s" % (
                attempt["host"], urlencode({"ticket": ticket})), request.host.lower(), user, admin, attempt["template"])
        self._clear_cookie(response, LOGIN_COOKIE)
        return response

    async def _identify(self, request, code, verifier):
        """(user name, groups) from the provider: the code (with the PKCE verifier) for a token, then userinfo."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self._redirect_uri(request),
                "client_id": self.oauth["client_id"], "client_secret": self.oauth["client_secret"],
                "code_verifier": verifier}
        async with self.http.post(self.oauth["token_url"], data=form, headers={"Accept": "application/json"}) as got:
            body = await got.json(content_type=None)
            if got.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
                raise InvalidInput("the token endpoint refused the code (HTTP %d: %s)" % (
                    got.status, (body or {}).get("error", "no access token") if isinstance(body, dict) else "?"))
        headers = {"Authorization": "Bearer %s" % body["access_token"], "Accept": "application/json"}
        async with self.http.get(self.oauth["userinfo_url"], headers=headers) as got:
            info = await got.json(content_type=None)
            if got.status != 200 or not isinstance(info, dict):
                raise InvalidInput("the userinfo endpoint answered HTTP %d" % got.status)
        name = _hub.userinfo_value(info, self.oauth["userinfo_path"])
        if name is None:
            raise InvalidInput("userinfo has no %s" % ".".join(self.oauth["userinfo_path"]))
        return _hub.check_username(str(name)), _hub.user_groups(info)

    async def session_from_ticket(self, request):
        now = self.clock()
        ticket = request.query.get("ticket") or ""
        payload = _tokens.verify(self.secret, "ticket", ticket, now)
        self.used_tickets = {n: exp for n, exp in self.used_tickets.items() if exp > now}
        if payload is None or payload["host"] != request.host.lower() or payload["nonce"] in self.used_tickets:
            return self._denied(400, "the login ticket is invalid, expired, used or for another host")
        self.used_tickets[payload["nonce"]] = payload["exp"]
        return self._session_response(payload["next"], payload["host"], payload["user"], payload["admin"],
                                      payload["template"])

    async def logout(self, request):
        response = _redirect("/_hub/dashboard")
        self._clear_cookie(response, SESSION_COOKIE)
        self._clear_cookie(response, _hub_routes.ROUTE_COOKIE)
        session = self.session_of(request)
        if session:
            if self.direct:  # the router forgets the user's token before the browser is told it is out
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.routes.withdraw, session["user"])
                except (LockboxError, OSError) as exc:
                    self.audit(session["user"], "route-withdraw-failed", error=str(getattr(exc, "msg", exc)))
            self.audit(session["user"], "logout")
        return response

    # -- root's socket (renet hub status|stop|hibernate) ---------------------------------------------

    def admin_app(self):
        """The API on ADMIN_SOCKET: root only (its file mode), no session needed."""
        app = web.Application()
        app.router.add_get("/status", self.admin_status)
        app.router.add_post("/stop/{user}", self.admin_stop)
        app.router.add_post("/hibernate/{user}", self.admin_stop)
        return app

    async def admin_status(self, _request):
        everyone = await asyncio.get_running_loop().run_in_executor(None, self.environments.status)
        return web.json_response({"environments": everyone, "routes": self.config["routes"],
                                  "base_domain": self.options["base_domain"]})

    async def admin_stop(self, request):
        """POST /stop/USER or /hibernate/USER (a checkpoint first, as after idling; templates without one stop)."""
        user = request.match_info["user"]
        verb = request.path.split("/")[1]
        known = {e["user"] for e in await asyncio.get_running_loop().run_in_executor(None, self.environments.status)}
        if user not in known:
            return web.json_response({"error": "no environment of user %r" % user}, status=404)
        act = self.environments.hibernate if verb == "hibernate" else self.environments.stop
        await asyncio.get_running_loop().run_in_executor(None, act, user)
        self.audit(user, verb, by="root")
        # hibernate stops an environment it cannot checkpoint (a template without checkpoint): the status says which.
        return web.json_response({"user": user, "action": verb, "status": self.environments.progress(user)["status"]})

    # -- API and dashboard -------------------------------------------------------------------

    def _required_session(self, request):
        session = self.session_of(request)
        if session is None:
            raise web.HTTPUnauthorized(text="log in first: /_hub/login\n")
        return session

    async def api_status(self, request):
        session = self._required_session(request)
        everyone = await asyncio.get_running_loop().run_in_executor(None, self.environments.status)
        visible = everyone if session["admin"] else [e for e in everyone if e["user"] == session["user"]]
        return web.json_response({"user": session["user"], "admin": session["admin"], "environments": visible,
                                  "routes": self.config["routes"], "base_domain": self.options["base_domain"]})

    async def api_progress(self, request):
        session = self._required_session(request)
        return web.json_response(self.environments.progress(session["user"]))

    async def api_stop(self, request):
        session = self._required_session(request)
        user = request.match_info["user"]
        if user != session["user"] and not session["admin"]:
            self.audit(session["user"], "stop-denied", target=user)
            raise web.HTTPForbidden(text="only an admin stops another user's environment\n")
        if request.headers.get("Origin") not in (None, "https://%s" % request.host.lower()):
            raise web.HTTPForbidden(text="cross-site request refused\n")
        await asyncio.get_running_loop().run_in_executor(None, self.environments.stop, user)
        self.audit(session["user"], "stop", target=user)
        return web.json_response({"stopped": user})

    async def dashboard(self, request):
        session = self.session_of(request)
        if session is None:
            raise web.HTTPFound("/_hub/login?%s" % urlencode({"next": "/_hub/dashboard"}))
        everyone = await asyncio.get_running_loop().run_in_executor(None, self.environments.status)
        rows = [e for e in everyone if session["admin"] or e["user"] == session["user"]]
        return web.Response(text=dashboard_page(session, rows, self.config["routes"], self.options["base_domain"]),
                            content_type="text/html")

    # -- the user's environment --------------------------------------------------------------

    async def serve_user(self, request):
        session = self.session_of(request)
        if session is None:
            next_path = _hub.safe_next(request.path_qs)
            raise web.HTTPFound("/_hub/login?%s" % urlencode({"next": next_path}))
        prefix = _hub.host_prefix(request.host, self.config["routes"], self.options["base_domain"])
        if prefix is None:  # the callback host serves no user port
            raise web.HTTPFound("/_hub/dashboard")
        target = self.environments.address(session["user"])
        if target is None:
            self.environments.ensure(session["user"])
            return self._waiting(request)
        self.environments.touch(session["user"])
        url = "http://%s:%d%s" % (target, self.config["routes"][prefix], request.path_qs)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._proxy_websocket(request, url, session["user"])
        return await self._proxy_http(request, url, self._route_token(request, session, target))

    def _route_token(self, request, session, address):
        """(route token, max-age) this browser should get (None: it has it, or there is no direct route).

        The router learns a new token a moment later (``apply_later``); until then this browser's
        requests keep coming here and are served the same way.
        """
        if not self.direct:
            return None
        token = self.routes.token_of(session["user"], address)
        if token is None:
            token = self.routes.grant(session["user"], address, session["exp"])
            if self.environments.address(session["user"]) != address:  # stopped meanwhile: no route to it
                self.routes.withdraw_later(session["user"])
                return None
            self.routes.apply_later()
        if request.cookies.get(_hub_routes.ROUTE_COOKIE) == token:
            return None
        return token, max(1, int(session["exp"] - self.clock()))

    def _waiting(self, request):
        if "text/html" not in request.headers.get("Accept", ""):
            return web.json_response({"starting": True}, status=503, headers={"Retry-After": "2"})
        page = ("<!doctype html><title>Starting your environment</title><h1>Starting your environment</h1>"
                "<pre id=p>...</pre><script>async function poll(){const r=await fetch('/_hub/api/progress');"
                "const p=await r.json();document.getElementById('p').textContent=p.steps.join('\\n');"
                "if(p.ready){location.reload()}else if(p.error){document.getElementById('p').textContent+="
                "'\\nfailed: '+p.error}else{setTimeout(poll,1000)}}poll()</script>")
        return web.Response(text=page, content_type="text/html", status=202)

    @staticmethod
    def _forwarded_headers(request):
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        cookies = [c.strip() for c in request.headers.get("Cookie", "").split(";")
                   if c.strip() and c.strip().split("=", 1)[0] not in HUB_COOKIES]
        headers.pop("Cookie", None)
        if cookies:
            headers["Cookie"] = "; ".join(cookies)  # the Hub's own cookies never reach the user's container
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = "https"
        return headers

    async def _proxy_http(self, request, url, route_token=None):
        body = request.content if request.body_exists else None  # streamed: uploads are not held in memory
        try:
            async with self.http.request(request.method, url, headers=self._forwarded_headers(request), data=body,
                                         allow_redirects=False, timeout=ClientTimeout(total=None, sock_read=300)) \
                    as upstream:
                response = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS})
                if route_token:
                    self._set_cookie(response, _hub_routes.ROUTE_COOKIE, *route_token)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(65536):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as exc:
            return web.Response(status=502, text="your environment did not answer: %s\n" % exc)

    async def _proxy_websocket(self, request, url, user):
        client = web.WebSocketResponse()
        await client.prepare(request)
        try:
            async with self.http.ws_connect("ws" + url[4:], headers={
                    k: v for k, v in self._forwarded_headers(request).items()
                    if not k.lower().startswith("sec-websocket")}) as upstream:
                # What the browser sends counts as the user's activity; what the container sends
                # alone (a forgotten tab watching output) does not.
                await asyncio.gather(_relay(client, upstream, lambda: self.environments.touch(user)),
                                     _relay(upstream, client, lambda: None))
        except ClientError:
            pass
        finally:
            await client.close()
        return client


DASHBOARD_COLUMNS = (("user", "user"), ("status", "status"), ("template", "template"), ("idle (s)", "idle_seconds"),
                     ("stops in (s)", "stops_in_seconds"), ("disk", "disk_bytes"), ("containers", "containers"),
                     ("images", "images"))
# Stopping posts to the API from this page's own origin (the API refuses other origins).
DASHBOARD_SCRIPT = """document.querySelectorAll("button[data-user]").forEach(b => b.onclick = async () => {
  b.disabled = true;
  await fetch("/_hub/api/stop/" + encodeURIComponent(b.dataset.user), {method: "POST"});
  location.reload();
});"""
DASHBOARD_STYLE = ("body{font:15px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
                   "th,td{padding:.35em .9em;border-bottom:1px solid #ddd;text-align:left}th{background:#f3f3f3}"
                   "button{font:inherit}")


def _shown(key, value):
    if value is None:
        return "-"
    return "%.1f MiB" % (value / (1 << 20)) if key == "disk_bytes" else str(value)


def dashboard_page(session, rows, routes, base_domain):
    """The dashboard's HTML: the environments ``rows`` the session may see, each with its links and a stop button."""
    links = " ".join('<a href="https://%s.%s/">%s</a>' % (html.escape(p), html.escape(base_domain), html.escape(p))
                     for p in sorted(routes))
    body = []
    for env in rows:
        cells = "".join("<td>%s</td>" % html.escape(_shown(key, env.get(key))) for _title, key in DASHBOARD_COLUMNS)
        stop = '<button data-user="%s">stop</button>' % html.escape(env["user"]) \
            if env.get("status") not in ("stopped", "absent") else ""
        body.append("<tr>%s<td>%s</td><td>%s</td></tr>" % (cells, links, stop))
    return ("<!doctype html><meta charset=utf-8><title>Hub</title><style>%s</style><h1>Environments</h1>"
            "<p>Signed in as %s%s &middot; <a href=\"/_hub/logout\">log out</a></p><table><tr>%s<th>links</th>"
            "<th></th></tr>%s</table><script>%s</script>"
            % (DASHBOARD_STYLE, html.escape(session["user"]), " (admin)" if session["admin"] else "",
               "".join("<th>%s</th>" % title for title, _key in DASHBOARD_COLUMNS), "".join(body), DASHBOARD_SCRIPT))


def _redirect(location):
    return web.Response(status=302, headers={"Location": location})


async def _relay(source, target, active):
    async for message in source:
        active()
        if message.type == WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await target.send_bytes(message.data)
        else:
            break
    await target.close()


def serve(hub, host, port, admin_socket=ADMIN_SOCKET):
    """Run the Hub until it is stopped (SIGTERM from systemd): the users' port and root's socket."""
    asyncio.run(_serve(hub, host, port, admin_socket))


async def _serve(hub, host, port, admin_socket):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    users, admin = web.AppRunner(hub.app(), access_log=None), web.AppRunner(hub.admin_app(), access_log=None)
    await users.setup()
    await admin.setup()
    try:
        await web.TCPSite(users, host, port).start()
        os.makedirs(os.path.dirname(admin_socket), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(admin_socket)
        old_mask = os.umask(0o177)  # the socket is root's from its first moment
        try:
            await web.UnixSite(admin, admin_socket).start()
        finally:
            os.umask(old_mask)
        await stop.wait()
    finally:
        await users.cleanup()
        await admin.cleanup()


def load_labels(path):
    with open(path) as handle:
        return json.load(handle)
