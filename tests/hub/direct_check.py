# SPDX-License-Identifier: GPL-3.0-or-later
"""Alice's environment through the guest's router (Caddy, with the sites hub_install wrote).

Her first request passes the Hub and brings her route token. Then the Hub is frozen (SIGSTOP):
with the token her page still answers through the router; without it the request waits for the
Hub. The kernel counted what she sent. Prints one JSON document.
Usage: python3 direct_check.py HUB_ADDRESS HUB_PORT
"""

import http.client
import json
import ssl
import subprocess
import sys
import time

from browser import Browser

MAP = "/run/rediacc/hub-routes/sessions.map"
HOST = "code.hub.test"


class RouterConnection(http.client.HTTPSConnection):
    """HTTPS to the router on 127.0.0.1:443 with the route host's name (SNI); its internal CA unchecked."""

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=HOST)


def through_router(cookies, timeout=30):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = RouterConnection("127.0.0.1", 443, timeout=timeout, context=context)
    try:
        connection.request("GET", "/", headers={"Host": HOST, "Accept": "text/html",
                                                "Cookie": "; ".join("%s=%s" % kv for kv in cookies.items())})
        response = connection.getresponse()
        token = [v.split("=", 1)[1].split(";")[0] for k, v in response.getheaders()
                 if k.lower() == "set-cookie" and v.startswith("__Host-hub_route=")]
        return {"status": response.status, "body": response.read().decode(errors="replace").strip()[:100],
                "token": token[0] if token else None}
    except TimeoutError:
        return {"status": "timeout"}


def hub(signal):
    subprocess.run(["systemctl", "kill", "--kill-whom=main", "--signal=%s" % signal, "rediacc-hub.service"],
                   check=True)


def alice_counted():
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "lockbox_hub_activity"], capture_output=True,
                         text=True, check=True).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule", {})
        if rule.get("comment") == "alice":
            return next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return None


def main(address, port):
    browser = Browser(port, address)
    browser.follow("https://%s/_hub/login?next=/" % HOST, user="alice")
    session = {"__Host-hub_session": browser.cookies[HOST]["__Host-hub_session"]}
    result = {"first": through_router(session)}
    token = result["first"]["token"]
    deadline = time.monotonic() + 60
    while token and time.monotonic() < deadline:
        with open(MAP) as handle:
            if token in handle.read():
                break
        time.sleep(0.5)
    time.sleep(3)  # the router's reload follows the map's write
    before = alice_counted()
    hub("SIGSTOP")
    try:
        result["frozen_with_token"] = [through_router(dict(session, **{"__Host-hub_route": token}))
                                       for _attempt in range(3)]
        result["frozen_without_token"] = through_router(session, timeout=5)
    finally:
        hub("SIGCONT")
    result["counted"] = alice_counted() - before
    result["token"] = token
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
