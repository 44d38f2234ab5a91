# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller tests: lockbox code against real peers started here (no guest, no fakes of the peer).

The OpenID provider is panva/oidc-provider from the npm registry (tests/oidc, installed by
scripts/setup with ``npm ci``), run with Node.js as its own process.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
if not (COLLECTIONS / "ansible_collections" / "lockbox" / "fleet").exists():
    raise RuntimeError("run scripts/setup first: it links the collection into %s" % COLLECTIONS)
sys.path.insert(0, str(COLLECTIONS))
# tests/hub is no package: its browser is copied alone into guests (molecule/hub).
sys.path.insert(0, str(ROOT / "tests" / "hub"))

OIDC = ROOT / "tests" / "oidc"
CLIENT_SECRET = "lockbox-test-client-secret-not-a-real-one"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def oidc_provider():
    """A running OpenID provider: {"url", "client_secret"}; stopped at the end of the session."""
    if not (OIDC / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("tests/oidc has no node_modules: run scripts/setup (npm ci --prefix tests/oidc)")
    redirects = ["https://code.hub.test/_hub/callback", "https://term.hub.test/_hub/callback",
                 "https://login.hub.test/_hub/callback"]
    port = free_port()
    env = dict(os.environ, PORT=str(port), ISSUER="http://127.0.0.1:%d" % port, CLIENT_SECRET=CLIENT_SECRET,
               REDIRECT_URIS=json.dumps(redirects))
    proc = subprocess.Popen(["node", "provider.js"], cwd=OIDC, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError("the OpenID provider did not start: %r" % line)
        yield {"url": "http://127.0.0.1:%d" % port, "client_secret": CLIENT_SECRET, "process": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
