# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compose rewrite behind ``renet compose``: one implementation for modules and host runtime.

Input is the compose model as ``docker compose config --format json`` prints it (so no
YAML parser is needed on hosts); output is the model handed back to ``docker compose``
against the repository's own daemon. Rules (docs/contract.md, docs/applications.md):

- every service runs with ``network_mode: host`` on its own loopback IP in the
  repository's /26; ``ports`` and ``networks`` are dropped (meaningless in host mode);
- ``rediacc.network_id`` / ``rediacc.service_ip`` / ``rediacc.service_name`` labels and
  ``SERVICE_IP`` / ``REDIACC_NETWORK_ID`` environment are injected (user values replaced);
- every service name resolves to its IP inside every container (``extra_hosts``);
- the user's ``extra_hosts`` are kept (a name that clashes with a service is an error);
- restart policies (``restart`` or ``deploy.restart_policy``) are stripped (CRIU) and
  returned in ``docker run`` terms, to be saved for the watchdog;
- anything that reaches outside the repository is refused unless ``unsafe`` (the
  allowlist in _isolation); ``NET_RAW`` is dropped (raw sockets bypass the loopback guard);
- services labelled ``rediacc.checkpoint=true`` get exactly what CRIU needs.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet.state import LOOPBACK
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation

# .0 (network), .1 (reserved) and .63 (broadcast) of each /26 are never given out.
FIRST_SLOT_OFFSET = 2
MAX_SERVICES = 61
CHECKPOINT_CAPS = _isolation.CHECKPOINT_CAPS
LABEL_PREFIX = "rediacc."


CRIU_CONFIG_ANNOTATION = "org.criu.config"


def criu_config(network_id):
    """The CRIU configuration file runc passes for the repository's containers (written before each dump/restore)."""
    return "/run/rediacc/criu/%d.conf" % network_id


def service_ip(network_id, slot):
    if not 0 <= slot < MAX_SERVICES:
        raise InvalidInput("a repository holds at most %d services" % MAX_SERVICES)
    return str(ipaddress.IPv4Address(int(LOOPBACK) + network_id + FIRST_SLOT_OFFSET + slot))


def assign_slots(services, recorded):
    """Keep every recorded slot; give new services the lowest free slots in compose order."""
    slots = {name: slot for name, slot in (recorded or {}).items() if name in services}
    free = (s for s in range(MAX_SERVICES) if s not in set(slots.values()))
    for name in services:
        if name not in slots:
            slot = next(free, None)
            if slot is None:
                raise InvalidInput("a repository holds at most %d services" % MAX_SERVICES)
            slots[name] = slot
    return slots


def _labels(service):
    labels = service.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    return dict(labels)


def _environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _extra_hosts(name, service, ips):
    """The user's extra_hosts kept, every service name added; a user entry naming a service is an error."""
    entries = service.get("extra_hosts") or []
    if isinstance(entries, dict):
        entries = ["%s:%s" % (host, ",".join(ip) if isinstance(ip, list) else ip) for host, ip in entries.items()]
    user = []
    for item in entries:
        entry = str(item)
        separator = "=" if "=" in entry else ":"
        host, _found, address = entry.partition(separator)
        if host in ips:
            raise InvalidInput("service %s: extra_hosts entry %s clashes with the service %s, whose name "
                               "resolves to %s in every container of the repository" % (name, entry, host, ips[host]))
        user.append("%s:%s" % (host, address))
    return sorted(user) + sorted("%s:%s" % (other, other_ip) for other, other_ip in ips.items())


_HOST_RULE = re.compile(r"Host\(([^)]*)\)")
_QUOTED = re.compile(r"`([^`]*)`")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def custom_domains(labels):
    """Host names of the service's ``traefik.http.routers.*.rule`` labels (``Host(`a.example.com`)``)."""
    found = set()
    for key, value in labels.items():
        if key.startswith("traefik.http.routers.") and key.endswith(".rule"):
            for arguments in _HOST_RULE.findall(str(value)):
                found.update(name.lower() for name in _QUOTED.findall(arguments) if _DNS_NAME.fullmatch(name.lower()))
    return sorted(found)


def custom_domain_port(labels):
    """The port Traefik would route to (``traefik.http.services.*.loadbalancer.server.port``), if given."""
    for key, value in sorted(labels.items()):
        if key.startswith("traefik.http.services.") and key.endswith(".loadbalancer.server.port"):
            return str(value)
    return None


def restart_policy(service):
    """The service's restart policy in ``docker run`` terms (always, unless-stopped, on-failure[:N]) or None."""
    policy = service.get("restart")
    if policy and policy != "no":
        return str(policy)
    deploy = (service.get("deploy") or {}).get("restart_policy")
    if deploy is None:
        return None
    condition = deploy.get("condition") or "any"  # compose spec: any is the default condition
    if condition == "none":
        return None
    if condition == "any":
        return "always"
    attempts = deploy.get("max_attempts")
    return "on-failure:%d" % int(attempts) if attempts else "on-failure"


# The user's own rediacc.* labels that stay; every other rediacc.* label is lockbox's to set.
KEPT_LABELS = ("rediacc.service_port", "rediacc.tcp_ports", "rediacc.udp_ports", "rediacc.checkpoint",
               "rediacc.install_as")
KEPT_LABEL_PREFIXES = ("rediacc.hub.",)


def _kept_label(key):
    return not key.startswith(LABEL_PREFIX) or key in KEPT_LABELS or key.startswith(KEPT_LABEL_PREFIXES)


def rewrite(model, network_id, recorded_slots=None, *, mount, project_dir, unsafe=False,
            realpath=os.path.realpath):
    """Return (rewritten model, slots, restart policies). Never modifies ``model``.

    Anything that reaches outside the repository (see _isolation) is refused unless ``unsafe``;
    accepted host paths are handed on resolved.
    """
    services = (model or {}).get("services") or {}
    if not services:
        raise InvalidInput("the compose file defines no services")
    out = copy.deepcopy(model)
    problems, foreign_secrets = _isolation.model_problems(out, mount, project_dir, realpath, network_id)
    if foreign_secrets:
        raise InvalidInput("refused: %s names other repositories' secrets (no --unsafe lifts this)"
                           % ", ".join(foreign_secrets))
    if problems and not unsafe:
        raise InvalidInput("refused, this would break the repository's isolation (use --unsafe to override "
                           "at your own risk): " + "; ".join(problems))
    slots = assign_slots(list(services), recorded_slots)
    ips = {name: service_ip(network_id, slot) for name, slot in slots.items()}
    out.pop("networks", None)
    restart = {}
    for name in list(out["services"]):
        service = out["services"][name] = out["services"][name] or {}
        ip = ips[name]
        for key in ("ports", "networks", "network_mode", "links", "mac_address", "hostname"):
            service.pop(key, None)
        service["network_mode"] = "host"
        policy = restart_policy(service)
        service.pop("restart", None)
        (service.get("deploy") or {}).pop("restart_policy", None)
        if policy:
            restart[name] = policy
        labels = {k: v for k, v in _labels(service).items() if _kept_label(k)}
        labels.update({"rediacc.network_id": str(network_id), "rediacc.service_ip": ip,
                       "rediacc.service_name": name})
        domains = custom_domains(labels)
        if domains:  # the router reads these two (it sees containers, not compose files)
            labels["rediacc.custom_domains"] = " ".join(domains)
            labels["rediacc.custom_port"] = custom_domain_port(labels) or str(labels.get("rediacc.service_port", ""))
        service["labels"] = labels
        env = _environment(service)
        env.update({"SERVICE_IP": ip, "REDIACC_NETWORK_ID": str(network_id)})
        service["environment"] = env
        service["extra_hosts"] = _extra_hosts(name, service, ips)
        if not unsafe:
            drop = [c for c in service.get("cap_drop") or [] if str(c).upper().removeprefix("CAP_") != "NET_RAW"]
            service["cap_drop"] = [*drop, "NET_RAW"]
        # CRIU reads this repository's own configuration for its containers (see criu_config).
        service["annotations"] = dict(_isolation.annotations_of(service),
                                      **{CRIU_CONFIG_ANNOTATION: criu_config(network_id)})
        if str(labels.get("rediacc.checkpoint", "")).lower() == "true":
            caps = list(service.get("cap_add") or [])
            service["cap_add"] = caps + [c for c in CHECKPOINT_CAPS if c not in caps]
            security = [s for s in service.get("security_opt") or [] if not s.startswith("apparmor")]
            service["security_opt"] = [*security, "apparmor=unconfined"]
            service["userns_mode"] = "host"
    return out, slots, restart
