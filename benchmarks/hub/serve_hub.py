# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's server for the benchmark: alice's environment is ready at 127.0.0.1:UPSTREAM_PORT.

Usage: serve_hub.py HUB_PORT UPSTREAM_PORT. Prints "listening <session cookie>" once it serves;
the cookie is alice's signed session for code.hub.test, as a login would have set it.
"""

import asyncio
import os
import sys
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core import tokens as _tokens
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_server as _hub_server
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub


class Ready:
    """Every user's environment is up on 127.0.0.1 (the benchmark measures the data path only)."""

    def address(self, _user):
        return "127.0.0.1"

    def touch(self, _user):
        pass

    def ensure(self, _user):
        pass

    def choose_template(self, _user, _name):
        pass

    def progress(self, _user):
        return {"status": "ready", "steps": [], "ready": True, "error": None}

    def status(self):
        return []

    def sample(self):
        pass


async def main(hub_port, upstream_port):
    from aiohttp import web
    secret = os.urandom(32)
    config = _hub.parse_labels({"rediacc.hub.route.code": str(upstream_port), "rediacc.hub.image": "img:1"})
    oauth = _hub.oauth_settings({"HUB_OAUTH_CLIENT_ID": "c", "HUB_OAUTH_CLIENT_SECRET": "s",
                                 "HUB_OAUTH_AUTHORIZE_URL": "http://p/auth", "HUB_OAUTH_TOKEN_URL": "http://p/token",
                                 "HUB_OAUTH_USERINFO_URL": "http://p/me", "HUB_OAUTH_USERINFO_PATH": "sub"})
    hub = _hub_server.Hub(config, {"base_domain": "hub.test"}, oauth, secret, Ready())
    runner = web.AppRunner(hub.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hub_port).start()
    session = _tokens.sign(secret, "session", {"user": "alice", "admin": False, "host": "code.hub.test",
                                               "template": None}, time.time(), 3600)
    print("listening %s=%s" % (_hub_server.SESSION_COOKIE, session), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
