# SPDX-License-Identifier: GPL-3.0-or-later
"""Two users at once through a Hub in a guest: log in at the real provider, wait, reach the environment.

Usage: python3 hub_check.py HUB_ADDRESS HUB_PORT USER [USER ...]
Every user logs in on https://code.hub.test/ (the provider's own login page, filled in), the
waiting page's progress is polled until the environment is ready, then the environment's page
is fetched through the Hub. Prints one JSON document: per user the final answer, the progress
steps, and what /_hub/api/status showed that user.
"""

import json
import sys
import threading
import time

from browser import Browser

TIMEOUT = 420


def one_user(address, port, user, results):
    browser = Browser(port, address)
    out = results[user] = {"steps": [], "error": None}
    try:
        status, _headers, _body, _cookies, url = browser.follow("https://code.hub.test/_hub/login?next=/", user=user)
        out["login"] = {"status": status, "url": url}
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            _s, _h, body, _c = browser.request("https://code.hub.test/_hub/api/progress")
            progress = json.loads(body)
            out["steps"] = progress["steps"]
            if progress["ready"] or progress["error"]:
                out["error"] = progress["error"]
                break
            time.sleep(1)
        status, _h, body, _c = browser.request("https://code.hub.test/")
        out["page"] = {"status": status, "body": body.strip()[:200]}
        _s, _h, body, _c = browser.request("https://code.hub.test/_hub/api/status")
        out["status"] = json.loads(body)
    except Exception as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, exc)


def main(argv):
    address, port, users = argv[1], int(argv[2]), argv[3:]
    results = {}
    threads = [threading.Thread(target=one_user, args=(address, port, user, results)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
