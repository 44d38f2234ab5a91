# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The router's direct routes to the Hub users' environments: an established session pays no Python hop.

The first request of a session with a ready environment passes the Hub, which answers it and
gives the browser a route token (cookie ``__Host-hub_route``, host-only, for the session's
remaining life). The Hub writes token -> the environment's address into a map file that the
router's Hub sites import (``hub_install`` writes those sites); the router (Caddy) then sends that
browser's requests for the user's route hosts straight to the environment, everything under
``/_hub/`` excepted, the Hub's own cookies stripped. A token is one user's: it leads to that
user's environment and nowhere else, and it is withdrawn (map rewritten, router reloaded) before
the environment stops, hibernates or is rebuilt, at logout, and when the session it was given
for expires; a Hub start begins with an empty map.

The Hub no longer sees those requests, so the kernel counts them: one nftables counter per user
on the data segments sent to the environment's route ports (``_tools/nft``), read by the idle loop.
"""

from __future__ import annotations

import contextlib
import grp
import os
import threading

from ansible_collections.lockbox.fleet.plugins.module_utils._core import tokens as _tokens
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import nft as _nft
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

ROUTE_COOKIE = "__Host-hub_route"
# Readable by the router's group only: a token there is a way into a user's environment.
ROUTES_DIR = "/run/rediacc/hub-routes"
MAP_FILE = os.path.join(ROUTES_DIR, "sessions.map")
ROUTER_GROUP = "caddy"
ROUTER_UNIT = "caddy.service"
# The router's placeholder holding the address a route token leads to (empty: no direct route).
ADDRESS_PLACEHOLDER = "lockbox_hub_address"


def map_text(grants):
    """The map file: one ``<token> <address>`` line per grant (tokens are base64url, addresses IPv4)."""
    lines = ["# Managed by renet hub start: route token -> the user's environment. Do not edit."]
    lines += ["%s %s" % (g["token"], g["address"]) for _user, g in sorted(grants.items())]
    return "\n".join(lines) + "\n"


def caddy_site(host, tls, hub_upstream, port=None, routes_dir=ROUTES_DIR):
    """One Hub site of the router: with ``port`` (a route host) the direct route first, the Hub for the rest."""
    lines = ["%s {" % host]
    if tls == "internal":
        lines.append("\ttls internal")
    if port is not None:
        lines += ["\tmap {http.request.cookie.%s} {%s} {" % (ROUTE_COOKIE, ADDRESS_PLACEHOLDER),
                  # A glob: the file exists only while a Hub runs; no match is no route.
                  "\t\timport %s/*.map" % routes_dir, '\t\tdefault ""', "\t}",
                  "\t@direct {", "\t\tnot path /_hub/*", '\t\tnot vars {%s} ""' % ADDRESS_PLACEHOLDER, "\t}",
                  "\thandle @direct {", "\t\treverse_proxy {%s}:%d {" % (ADDRESS_PLACEHOLDER, port),
                  # The Hub's cookies never reach the user's container (as through the Hub's own proxy).
                  '\t\t\theader_up Cookie "(^|;)\\s*__Host-hub_(session|login|route)=[^;]*" "$1"',
                  "\t\t\ttransport http {", "\t\t\t\tkeepalive_idle_conns_per_host 256", "\t\t\t}",
                  "\t\t}", "\t}", "\thandle {", "\t\treverse_proxy %s" % hub_upstream, "\t}"]
    else:
        lines.append("\treverse_proxy %s" % hub_upstream)
    return "\n".join([*lines, "}", ""])


class DirectRoutes:
    """The route tokens of one Hub: granted on a request, withdrawn before the environment leaves."""

    def __init__(self, runner, ports, router_file, *, map_file=MAP_FILE, group=ROUTER_GROUP):
        self.runner, self.ports, self.router_file = runner, sorted(set(ports)), router_file
        self.map_file, self.group = map_file, group
        self.grants, self.lock = {}, threading.Lock()
        self.counts, self.carried = {}, set()
        self.wanted, self.applied, self.applying = 0, 0, threading.Lock()

    @property
    def enabled(self):
        """Direct routes exist only behind a router that imports the map (a host with the router role)."""
        return os.path.exists(self.router_file)

    def start(self):
        """A Hub start: no grant survives the Hub that made it."""
        with self.lock:
            self.grants = {}
            self.wanted += 1
        self.apply()

    def token_of(self, user, address):
        """The user's route token when it leads to ``address`` (None: none, or an old address)."""
        grant = self.grants.get(user)
        return grant["token"] if grant and grant["address"] == address else None

    def grant(self, user, address, expires):
        """The user's token to ``address``, new or kept, valid until ``expires`` at least; applied by
        the caller (``apply``) before the router knows it, meanwhile the Hub serves the requests."""
        with self.lock:
            grant = self.grants.get(user)
            if grant is None or grant["address"] != address:
                grant = {"token": _tokens.random_token(), "address": address, "expires": expires}
                self.grants[user] = grant
                self.wanted += 1
            grant["expires"] = max(grant["expires"], expires)
            return grant["token"]

    def withdraw(self, user):
        """No direct route for ``user`` any more, applied before this returns (the router reloaded)."""
        if self._drop(user):
            self.apply()

    def withdraw_later(self, user):
        """``withdraw`` without waiting for the router (from the Hub's event loop)."""
        if self._drop(user):
            self.apply_later()

    def _drop(self, user):
        with self.lock:
            if self.grants.pop(user, None) is None:
                return False
            self.wanted += 1
            return True

    def prune(self, now, address_of=None):
        """Grants of sessions that ended are withdrawn, and with ``address_of`` (user -> the address
        of their ready environment, or None) those to any other address (a grant that raced a stop)."""
        with self.lock:
            ended = [u for u, g in self.grants.items()
                     if g["expires"] <= now or (address_of is not None and address_of(u) != g["address"])]
            for user in ended:
                del self.grants[user]
            if ended:
                self.wanted += 1
        if ended:
            self.apply()
        return ended

    def apply(self):
        """Write the map and the activity counters and reload the router, unless a newer apply did."""
        with self.applying:
            with self.lock:
                if self.applied == self.wanted and self.wanted:
                    return
                target, grants = self.wanted, {u: dict(g) for u, g in self.grants.items()}
            self.carried |= self._active_since_last()
            os.makedirs(os.path.dirname(self.map_file), mode=0o750, exist_ok=True)
            gid = self._router_gid()
            write_atomic(self.map_file, map_text(grants), mode=0o640)
            if gid is not None:
                os.chown(os.path.dirname(self.map_file), 0, gid)
                os.chown(self.map_file, 0, gid)
            # The router first: a withdrawn token must stop leading anywhere even if counting fails.
            if self.enabled and _systemd.is_active(self.runner, ROUTER_UNIT) == "active":
                _systemd.systemctl(self.runner, "reload", ROUTER_UNIT)
            _nft.load(self.runner, _nft.activity_ruleset({u: (g["address"], self.ports) for u, g in grants.items()}))
            self.counts = {}
            self.applied = target

    def apply_later(self):
        """``apply`` in a thread of its own: a grant does not wait for the router's reload."""
        threading.Thread(target=self._apply_quietly, daemon=True).start()

    def _apply_quietly(self):
        with contextlib.suppress(LockboxError, OSError):
            self.apply()

    def _router_gid(self):
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            return None

    def _active_since_last(self):
        """Users whose counter grew since the last look (counters restart when the table is loaded)."""
        try:
            counts = _nft.activity_counts(self.runner)
        except (LockboxError, OSError, ValueError):
            return set()
        active = {u for u, n in counts.items() if n > self.counts.get(u, 0)}
        self.counts = counts
        return active

    def active_users(self):
        """Users who sent anything on a direct route since the last call (the idle loop's)."""
        with self.applying:
            active = self._active_since_last() | self.carried
            self.carried = set()
            return active

    def remove(self):
        """At the Hub's stop: the map emptied and the counters gone; the router forgets every token."""
        with self.lock:
            self.grants = {}
            self.wanted += 1
        with contextlib.suppress(LockboxError, OSError):
            self.apply()
            _nft.remove_activity(self.runner)
