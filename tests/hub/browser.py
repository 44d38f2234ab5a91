# SPDX-License-Identifier: GPL-3.0-or-later
"""A small browser for the Hub's tests: redirects, cookies per host, the provider's login forms.

Requests for https://*.hub.test go to the Hub's own address with the right Host header (the
Hub's __Host- cookies are kept too, which a library cookie jar drops over plain HTTP); every
other URL goes where it says. Used by tests/controller and, copied into a guest, by
tests/hub/hub_check.py. Standard library only.
"""

import html.parser
import http.client
from urllib.parse import urlencode, urljoin, urlsplit


class Forms(html.parser.HTMLParser):
    """The first form of a page: its action and its fields (inputs with a value, buttons)."""

    def __init__(self):
        super().__init__()
        self.action, self.fields = None, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action")
        elif tag in ("input", "button") and attrs.get("name"):
            self.fields.setdefault(attrs["name"], attrs.get("value") or "")


class Browser:
    """Follows redirects; cookies per host; https://*.hub.test goes to the Hub on 127.0.0.1."""

    def __init__(self, hub_port, hub_address="127.0.0.1"):
        self.hub_port, self.hub_address, self.cookies = hub_port, hub_address, {}

    def request(self, url, method="GET", form=None, headers=None):
        parts = urlsplit(url)
        host = parts.netloc
        if host.endswith(".hub.test") or host == "evil.test":
            connection = http.client.HTTPConnection(self.hub_address, self.hub_port, timeout=30)
        else:
            connection = http.client.HTTPConnection(host, timeout=30)
        sent = {"Host": host, "Accept": "text/html", **(headers or {})}
        jar = self.cookies.get(host, {})
        if jar:
            sent["Cookie"] = "; ".join("%s=%s" % kv for kv in jar.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, parts.path + ("?" + parts.query if parts.query else ""), body=body, headers=sent)
        response = connection.getresponse()
        data = response.read().decode(errors="replace")
        set_cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
        for header in set_cookies:
            name, _eq, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower() or "expires=thu, 01 jan 1970" in header.lower():
                self.cookies.setdefault(host, {}).pop(name, None)
            else:
                self.cookies.setdefault(host, {})[name] = value
        return response.status, dict(response.getheaders()), data, set_cookies

    def follow(self, url, user="alice", stop_at=None, max_hops=20):
        """Follow the flow from ``url``, signing in as ``user`` at the provider; the last answer."""
        method, form = "GET", None
        for _hop in range(max_hops):
            if stop_at and stop_at(url):
                return url
            status, headers, body, cookies = self.request(url, method, form)
            method, form = "GET", None
            if status in (301, 302, 303, 307):
                url = urljoin(url, headers["Location"])
                continue
            if status == 200 and "<form" in body and not urlsplit(url).netloc.endswith(".hub.test"):
                page = Forms()
                page.feed(body)
                fields = dict(page.fields)
                if "login" in fields:
                    fields.update(login=user, password="any")
                url, method, form = urljoin(url, page.action), "POST", fields
                continue
            return status, headers, body, cookies, url
        raise AssertionError("too many redirects")
