# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compose rewrite behind ``renet compose``: one implementation for modules and host runtime.

Input is the compose model as ``docker compose config --format json`` prints it (so no
YAML parser is needed on hosts); output is the model handed back to ``docker compose``
against the repository's own daemon. Rules (seed 000, "Compose"):

- every service runs with ``network_mode: host`` on its own loopback IP in the
  repository's /26; ``ports`` and ``networks`` are dropped (meaningless in host mode);
- ``rediacc.network_id`` / ``rediacc.service_ip`` / ``rediacc.service_name`` labels and
  ``SERVICE_IP`` / ``REDIACC_NETWORK_ID`` environment are injected (user values replaced);
- every service name resolves to its IP inside every container (``extra_hosts``);
- restart policies are stripped (CRIU) and returned, to be saved for the watchdog;
- privileged, ``pid: host``, ``ipc: host`` and binds of system paths are refused unless
  ``unsafe``;
- services labelled ``rediacc.checkpoint=true`` get exactly what CRIU needs.
"""

from __future__ import annotations

import copy
import ipaddress
import posixpath

from ansible_collections.lockbox.fleet.plugins.module_utils._errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._state import LOOPBACK

# .0 (network), .1 (reserved) and .63 (broadcast) of each /26 are never given out.
FIRST_SLOT_OFFSET = 2
MAX_SERVICES = 61
SYSTEM_BIND_SOURCES = ("/", "/etc", "/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib",
                       "/lib64", "/root", "/var/run/docker.sock", "/run/docker.sock", "/var/run/rediacc",
                       "/run/rediacc", "/var/lib/docker", "/var/lib/rediacc")
# Trees whose *whole* contents are sensitive: a bind of anything under them is refused too.
SYSTEM_BIND_TREES = ("/etc", "/proc", "/sys", "/dev", "/boot", "/var/run/rediacc", "/run/rediacc",
                     "/var/lib/docker", "/var/lib/rediacc")
CHECKPOINT_CAPS = ("CHECKPOINT_RESTORE", "SYS_PTRACE", "NET_ADMIN")
LABEL_PREFIX = "rediacc."


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


def _bind_sources(service):
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith("/"):
                yield source
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            yield volume.get("source") or ""


def _is_system_bind(source):
    path = posixpath.normpath(source) if source else source
    if path in SYSTEM_BIND_SOURCES:
        return True
    return any(path.startswith(tree + "/") for tree in SYSTEM_BIND_TREES)


def hostile_settings(name, service):
    """What in a service escapes the repository's isolation, as messages."""
    problems = []
    if service.get("privileged"):
        problems.append("service %s: privileged: true gives the container the whole host" % name)
    if service.get("pid") == "host":
        problems.append("service %s: pid: host shares the host's process namespace" % name)
    if service.get("ipc") == "host":
        problems.append("service %s: ipc: host shares the host's IPC namespace" % name)
    for source in _bind_sources(service):
        if _is_system_bind(source):
            problems.append("service %s: bind mount of the system path %s" % (name, source))
    return problems


def rewrite(model, network_id, recorded_slots=None, unsafe=False):
    """Return (rewritten model, slots, restart policies). Never modifies ``model``."""
    services = (model or {}).get("services") or {}
    if not services:
        raise InvalidInput("the compose file defines no services")
    problems = [p for name, svc in services.items() for p in hostile_settings(name, svc or {})]
    if problems and not unsafe:
        raise InvalidInput("refused, this would break the repository's isolation (use --unsafe to override "
                           "at your own risk): " + "; ".join(problems))
    slots = assign_slots(list(services), recorded_slots)
    ips = {name: service_ip(network_id, slot) for name, slot in slots.items()}
    out = copy.deepcopy(model)
    out.pop("networks", None)
    restart = {}
    for name in list(out["services"]):
        service = out["services"][name] = out["services"][name] or {}
        ip = ips[name]
        for key in ("ports", "networks", "network_mode", "links", "mac_address", "hostname"):
            service.pop(key, None)
        service["network_mode"] = "host"
        policy = service.pop("restart", None)
        deploy_restart = (service.get("deploy") or {}).pop("restart_policy", None)
        if policy or deploy_restart:
            restart[name] = policy or deploy_restart.get("condition", "on-failure")
        labels = {k: v for k, v in _labels(service).items() if not k.startswith(LABEL_PREFIX) or
                  k in ("rediacc.service_port", "rediacc.tcp_ports", "rediacc.udp_ports", "rediacc.checkpoint")}
        labels.update({"rediacc.network_id": str(network_id), "rediacc.service_ip": ip,
                       "rediacc.service_name": name})
        service["labels"] = labels
        env = _environment(service)
        env.update({"SERVICE_IP": ip, "REDIACC_NETWORK_ID": str(network_id)})
        service["environment"] = env
        service["extra_hosts"] = sorted("%s:%s" % (other, other_ip) for other, other_ip in ips.items())
        if str(labels.get("rediacc.checkpoint", "")).lower() == "true":
            caps = list(service.get("cap_add") or [])
            service["cap_add"] = caps + [c for c in CHECKPOINT_CAPS if c not in caps]
            security = [s for s in service.get("security_opt") or [] if not s.startswith("apparmor")]
            service["security_opt"] = [*security, "apparmor=unconfined"]
            service["userns_mode"] = "host"
    return out, slots, restart
