# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The route table of a host, and the router configurations made from it.

A route is ``https://{service}.{repo}.{machine}.{baseDomain}`` (a fork's services:
``{service}-fork-{tag}.{parent}.{machine}.{baseDomain}``) to a running container labelled
``rediacc.service_port``, at its service IP. The table is written as a Caddyfile fragment
(Caddy is the embedded router) and as a Traefik file-provider configuration, from the same
list; the watchdog and ``repo up`` keep both in step with the running repositories.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, write_if_changed
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import nft as _nft
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

ROUTER_CONFIG = "/etc/rediacc/router.json"
DEFAULT_CADDY_ROUTES = "/etc/caddy/lockbox-routes.caddy"
DEFAULT_TRAEFIK_ROUTES = "/etc/rediacc/traefik/lockbox.yml"
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PORTS = re.compile(r"^\d{1,5}(,\d{1,5})*$")


def _dns_label(text):
    """A repository or service name as one DNS label (lower case, [a-z0-9-])."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def check_router_settings(machine, base_domain):
    if not machine or not _LABEL.fullmatch(_dns_label(machine)):
        raise InvalidInput("machine must give a DNS label for route names, got %r" % (machine,))
    labels = (base_domain or "").split(".")
    if not base_domain or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput("base_domain must be a DNS name such as example.com, got %r" % (base_domain,))


def route_host(service, repository, machine, base_domain):
    """Host name of a service; ``repository`` is the record (a fork names its parent and tag)."""
    if repository.get("parent") and repository.get("tag"):
        prefix, repo = "%s-fork-%s" % (_dns_label(service), _dns_label(repository["tag"])), repository["parent"]
    else:
        prefix, repo = _dns_label(service), repository["name"]
    return "%s.%s.%s.%s" % (prefix, _dns_label(repo), _dns_label(machine), base_domain)


def wildcard_of(record, machine, base_domain):
    """The wildcard certificate name that covers every route of a repository and of its forks."""
    repo = record["parent"] if record.get("parent") and record.get("tag") else record["name"]
    return "*.%s.%s.%s" % (_dns_label(repo), _dns_label(machine), base_domain)


def _ports(value):
    value = (value or "").replace(" ", "")
    return [int(p) for p in value.split(",")] if value and _PORTS.fullmatch(value) else []


def _running_services(runner, state_dir, socket_dir):
    """(record, container) for every running compose service of every ready repository's daemon."""
    for record in _state.HostState(state_dir).all():
        if record.get("status") != _state.READY:
            continue
        if not os.path.exists(_repo_daemon.socket_path(record["network_id"], socket_dir)):
            continue
        try:
            found = _project.containers(runner, record["network_id"])
        except LockboxError:
            continue  # a daemon starting or stopping: the next pass picks it up
        for container in found:
            if container["state"] == "running" and container.get("service") and container.get("service_ip") \
                    and container.get("network_id") == str(record["network_id"]):
                yield record, container


def route_table(runner, state_dir, machine, base_domain, socket_dir=_repo_daemon.SOCKET_DIR):
    """(HTTP routes sorted by host, TCP/UDP forwards sorted by port, forwards refused for a port already taken)."""
    routes, claims, domains = [], [], []
    for record, container in _running_services(runner, state_dir, socket_dir):
        base = {"repository": record["name"], "service": container["service"], "network_id": record["network_id"],
                "address": container["service_ip"]}
        port = _ports(container.get("service_port"))
        if port:
            routes.append(dict(base, host=route_host(container["service"], record, machine, base_domain),
                               upstream="%s:%d" % (container["service_ip"], port[0]), wildcard=wildcard_of(
                                   record, machine, base_domain)))
        custom_port = _ports(container.get("custom_port"))
        # A custom domain belongs to the grand repository: its forks never answer for it.
        if custom_port and not record.get("parent"):
            for host in (container.get("custom_domains") or "").split():
                domains.append(dict(base, host=host, upstream="%s:%d" % (container["service_ip"], custom_port[0]),
                                    custom=True))
        for protocol in ("tcp", "udp"):
            claims += [dict(base, protocol=protocol, port=p) for p in _ports(container.get("%s_ports" % protocol))]
    forwards, conflicts, taken, hosts = [], [], {}, {r["host"] for r in routes}
    # A custom domain goes to one service too: the first repository by name keeps it.
    for domain in sorted(domains, key=lambda d: (d["host"], d["repository"], d["service"])):
        if domain["host"] in hosts:
            conflicts.append(dict(domain, protocol="https", port=443, taken_by=next(
                "%s/%s" % (r["repository"], r["service"]) for r in routes if r["host"] == domain["host"])))
        else:
            hosts.add(domain["host"])
            routes.append(domain)
    # A host port goes to one service: the first repository by name keeps it.
    for claim in sorted(claims, key=lambda c: (c["protocol"], c["port"], c["repository"], c["service"])):
        key = (claim["protocol"], claim["port"])
        if key in taken:
            conflicts.append(dict(claim, taken_by=taken[key]))
        else:
            taken[key] = "%s/%s" % (claim["repository"], claim["service"])
            forwards.append(claim)
    return sorted(routes, key=lambda r: r["host"]), forwards, conflicts


def render_caddy(routes, tls="internal"):
    lines = ["# Managed by lockbox.fleet (renet): one site per repository service route.", ""]
    for route in routes:
        lines += ["%s {" % route["host"]]
        if tls == "internal":
            lines += ["\ttls internal"]
        lines += ["\treverse_proxy %s" % route["upstream"], "}", ""]
    return "\n".join(lines)


def render_traefik(routes, forwards=(), cert_resolver=""):
    """Traefik file-provider dynamic configuration (JSON is YAML, which Traefik reads).

    TCP/UDP forwards use entry points named ``tcp-<port>`` / ``udp-<port>``, which the
    Traefik static configuration has to define. With ``cert_resolver`` (an ACME resolver
    with a DNS challenge, defined in the static configuration) every route of a repository
    asks for the one wildcard certificate ``*.{repo}.{machine}.{domain}``, which also covers
    its forks' ``{service}-fork-{tag}`` names: a fork needs no new certificate.
    """
    routers, services = {}, {}
    for route in routes:
        name = route["host"].replace(".", "-")
        tls = {}
        if cert_resolver:
            tls = {"certResolver": cert_resolver}
            if route.get("wildcard"):
                tls["domains"] = [{"main": route["wildcard"][2:], "sans": [route["wildcard"]]}]
        routers[name] = {"rule": "Host(`%s`)" % route["host"], "service": name, "tls": tls}
        services[name] = {"loadBalancer": {"servers": [{"url": "http://%s" % route["upstream"]}]}}
    config = {"http": {"routers": routers, "services": services}}
    for forward in forwards:
        protocol, entry = forward["protocol"], "%s-%d" % (forward["protocol"], forward["port"])
        section = config.setdefault(protocol, {"routers": {}, "services": {}})
        router = {"entryPoints": [entry], "service": entry}
        if protocol == "tcp":
            router["rule"] = "HostSNI(`*`)"
        section["routers"][entry] = router
        section["services"][entry] = {"loadBalancer": {"servers": [
            {"address": "%s:%d" % (forward["address"], forward["port"])}]}}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def load_settings(path=ROUTER_CONFIG):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LockboxError("%s is damaged: %s" % (path, exc)) from None


def sync(runner, state_dir=_state.DEFAULT_STATE_DIR, settings=None, check_mode=False):
    """Write the route files and forward rules when the table changed, reload Caddy; returns (changed, table).

    Without router settings (no router role on this host) there is nothing to do.
    """
    settings = settings if settings is not None else load_settings()
    if not settings:
        return False, {"routes": [], "forwards": [], "conflicts": []}
    check_router_settings(settings.get("machine"), settings.get("base_domain"))
    if check_mode:
        return _sync(runner, state_dir, settings, check_mode=True)
    with _one_writer(state_dir):
        return _sync(runner, state_dir, settings)


@contextlib.contextmanager
def _one_writer(state_dir):
    """One route sync at a time on a host (a module and the watchdog): the table written is the newest."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(state_dir, ".routes.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _sync(runner, state_dir, settings, check_mode=False):
    routes, forwards, conflicts = route_table(runner, state_dir, settings["machine"], settings["base_domain"])
    caddy_path = settings.get("caddy_routes") or DEFAULT_CADDY_ROUTES
    traefik_path = settings.get("traefik_routes")
    wanted = {caddy_path: render_caddy(routes, settings.get("tls", "internal"))}
    if traefik_path:
        wanted[traefik_path] = render_traefik(routes, forwards, settings.get("traefik_cert_resolver") or "")
    table = {"routes": routes, "forwards": forwards, "conflicts": conflicts}
    ruleset = _nft.forward_ruleset(forwards) if settings.get("forward", True) else None
    if check_mode:
        return any(read_text(p) != c for p, c in wanted.items()) or (
            ruleset is not None and read_text(_nft.APPLIED) != ruleset), table
    changed = {p for p, c in wanted.items() if write_if_changed(p, c)}
    if ruleset is not None and _nft.apply_forwards(runner, ruleset):
        changed.add(_nft.APPLIED)
    if caddy_path in changed and settings.get("reload_caddy", True):
        status = _systemd.is_active(runner, "caddy.service")
        if status == "active":
            _systemd.systemctl(runner, "reload", "caddy.service")
    return bool(changed), table


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.routes: bring the router's table in step with the running repositories."""
    settings = load_settings(params.get("router_config") or ROUTER_CONFIG)
    if settings is None:
        raise InvalidInput("%s does not exist: set the host up with the lockbox.fleet.router role first"
                           % (params.get("router_config") or ROUTER_CONFIG))
    changed, table = sync(runner, params.get("state_dir") or _state.DEFAULT_STATE_DIR, settings,
                          check_mode=check_mode)
    return dict(table, changed=changed)
