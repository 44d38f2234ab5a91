# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The route table of a host, and the router configurations made from it.

A route is ``https://{service}.{repo}.{machine}.{baseDomain}`` (a fork's services:
``{service}-fork-{tag}.{parent}.{machine}.{baseDomain}``) to a running container labelled
``rediacc.service_port``, at its service IP. The table is written as a Caddyfile fragment
(Caddy is the embedded router) and as a Traefik file-provider configuration, from the same
list; the watchdog and ``repo up`` keep both in step with the running repositories.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.lockbox.fleet.plugins.module_utils import _app, _dockerd, _state
from ansible_collections.lockbox.fleet.plugins.module_utils._errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._files import read_text, write_if_changed

ROUTER_CONFIG = "/etc/rediacc/router.json"
DEFAULT_CADDY_ROUTES = "/etc/caddy/lockbox-routes.caddy"
DEFAULT_TRAEFIK_ROUTES = "/etc/rediacc/traefik/lockbox.yml"
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PORTS = re.compile(r"^\d{1,5}(,\d{1,5})*$")


def _dns_label(text):
    """A repository or service name as one DNS label (lower case, [a-z0-9-])."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def check_router_settings(machine, base_domain):
    if not machine or not _LABEL.match(_dns_label(machine)):
        raise InvalidInput("machine must give a DNS label for route names, got %r" % (machine,))
    labels = (base_domain or "").split(".")
    if not base_domain or not all(_LABEL.match(label) for label in labels):
        raise InvalidInput("base_domain must be a DNS name such as example.com, got %r" % (base_domain,))


def route_host(service, repository, machine, base_domain):
    """Host name of a service; ``repository`` is the record (a fork names its parent and tag)."""
    if repository.get("parent") and repository.get("tag"):
        prefix, repo = "%s-fork-%s" % (_dns_label(service), _dns_label(repository["tag"])), repository["parent"]
    else:
        prefix, repo = _dns_label(service), repository["name"]
    return "%s.%s.%s.%s" % (prefix, _dns_label(repo), _dns_label(machine), base_domain)


def _ports(value):
    value = (value or "").replace(" ", "")
    return [int(p) for p in value.split(",")] if value and _PORTS.match(value) else []


def route_table(runner, state_dir, machine, base_domain, socket_dir=_dockerd.SOCKET_DIR):
    """Routes of every running container labelled rediacc.service_port, sorted by host."""
    routes = []
    for record in _state.HostState(state_dir).all():
        if record.get("status") != _state.READY:
            continue
        if not os.path.exists(_dockerd.socket_path(record["network_id"], socket_dir)):
            continue
        try:
            found = _app.containers(runner, record["network_id"])
        except LockboxError:
            continue  # a daemon starting or stopping: the next pass picks it up
        for container in found:
            port = _ports(container.get("service_port"))
            if container["state"] != "running" or not container.get("service") or not container.get("service_ip"):
                continue
            route = {"repository": record["name"], "service": container["service"],
                     "network_id": record["network_id"], "address": container["service_ip"]}
            if port:
                routes.append(dict(route, host=route_host(container["service"], record, machine, base_domain),
                                   upstream="%s:%d" % (container["service_ip"], port[0])))
    return sorted(routes, key=lambda r: r["host"])


def render_caddy(routes, tls="internal"):
    lines = ["# Managed by lockbox.fleet (renet): one site per repository service route.", ""]
    for route in routes:
        lines += ["%s {" % route["host"]]
        if tls == "internal":
            lines += ["\ttls internal"]
        lines += ["\treverse_proxy %s" % route["upstream"], "}", ""]
    return "\n".join(lines)


def render_traefik(routes):
    """Traefik file-provider dynamic configuration (JSON is YAML, which Traefik reads)."""
    routers, services = {}, {}
    for route in routes:
        name = route["host"].replace(".", "-")
        routers[name] = {"rule": "Host(`%s`)" % route["host"], "service": name, "tls": {}}
        services[name] = {"loadBalancer": {"servers": [{"url": "http://%s" % route["upstream"]}]}}
    return json.dumps({"http": {"routers": routers, "services": services}}, indent=2, sort_keys=True) + "\n"


def load_settings(path=ROUTER_CONFIG):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LockboxError("%s is damaged: %s" % (path, exc)) from None


def sync(runner, state_dir=_state.DEFAULT_STATE_DIR, settings=None, check_mode=False):
    """Write the route files when the table changed and reload Caddy; returns (changed, routes).

    Without router settings (no router role on this host) there is nothing to do.
    """
    settings = settings if settings is not None else load_settings()
    if not settings:
        return False, []
    check_router_settings(settings.get("machine"), settings.get("base_domain"))
    routes = route_table(runner, state_dir, settings["machine"], settings["base_domain"])
    caddy_path = settings.get("caddy_routes") or DEFAULT_CADDY_ROUTES
    traefik_path = settings.get("traefik_routes")
    wanted = {caddy_path: render_caddy(routes, settings.get("tls", "internal"))}
    if traefik_path:
        wanted[traefik_path] = render_traefik(routes)
    if check_mode:
        return any(read_text(p) != c for p, c in wanted.items()), routes
    changed = {p for p, c in wanted.items() if write_if_changed(p, c)}
    if caddy_path in changed and settings.get("reload_caddy", True):
        status = runner.run(["systemctl", "is-active", "caddy.service"], ok_rcs=(0, 3, 4)).stdout.strip()
        if status == "active":
            runner.run(["systemctl", "reload", "caddy.service"])
    return bool(changed), routes
