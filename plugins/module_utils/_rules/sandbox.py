# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a sandbox session of one repository may touch: files (Landlock) and its Docker API.

A session runs as the unprivileged ``rediacc`` user with no new privileges, in its own mount
namespace, confined by Landlock to the system's read-only trees, its repository's mount, its
own home and TMPDIR. Its ``DOCKER_HOST`` is a socket that only the session can open, and
every request on it is judged here before it reaches the repository's daemon: an allowlist
of endpoints, and for what creates containers and volumes the same rule as a compose file
(``_rules/isolation``), so a container cannot be used to step out of the repository either.
"""

from __future__ import annotations

import json
import os
import posixpath
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation

USER = "rediacc"
UID = 7111
# A tmpfs in the session's own mount namespace: its home, TMPDIR and Docker socket.
SESSION_DIR = "/run/rediacc/sandbox"
SOCKET_NAME = "docker.sock"
# Inside the session, these are the session's own TMPDIR (bind mounts in its mount namespace).
SHARED_TMP = ("/tmp", "/var/tmp")  # noqa: S108 - replaced, in the session only, by its own

READ = ("execute", "read_file", "read_dir")
WRITE = (*READ, "write_file", "remove_dir", "remove_file", "make_dir", "make_reg", "make_sock", "make_fifo",
         "make_sym", "refer", "truncate")
# The system a shell needs, read-only (file modes still apply: /etc/shadow stays root's).
READ_ONLY_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt", "/proc", "/sys",
                   "/run/systemd/resolve")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts",
           "/dev/ptmx")


def landlock_rules(mount, session_dir=SESSION_DIR, exists=None):
    """[(path, rights)]: everything else, other repositories first of all, is EACCES."""
    exists = exists or os.path.exists
    rules = [(path, READ) for path in READ_ONLY_TREES]
    rules += [(path, (*WRITE, "ioctl_dev")) for path in DEVICES]
    # /tmp and /var/tmp are the session's tmp/ by then (bind mounts): Landlock follows the path
    # through the bind, not through session_dir, so each needs its own rule (on that same inode).
    rules += [(mount, WRITE), (session_dir, WRITE), *((path, WRITE) for path in SHARED_TMP)]
    return [(path, rights) for path, rights in rules if exists(path)]


def environment(repo, session_dir=SESSION_DIR, term=None):
    """The session's whole environment: nothing of the gateway's own is passed on."""
    env = {
        "HOME": posixpath.join(session_dir, "home"), "TMPDIR": posixpath.join(session_dir, "tmp"),
        "USER": USER, "LOGNAME": USER,
        "SHELL": "/bin/bash", "PATH": "/usr/local/bin:/usr/bin:/bin",
        "DOCKER_HOST": "unix://%s/%s" % (session_dir, SOCKET_NAME),
        "REDIACC_REPOSITORY": repo.name, "REDIACC_NETWORK_ID": str(repo.network_id),
        "REDIACC_WORKING_DIR": repo.mount, "REDIACC_SANDBOX": "1",
    }
    if term:
        env["TERM"] = term
    return env


class Refused(Exception):
    """A Docker API request the sandbox does not pass on; the message goes back to the client."""


_VERSION = re.compile(r"^/v\d+\.\d+(?=/)")
_ID = r"[^/]+"
# (method, path pattern, how: "pass", or the kind of body to judge).
ENDPOINTS = [(m, re.compile("^%s$" % p), how) for m, p, how in (
    ("GET", r"/.*", "pass"), ("HEAD", r"/.*", "pass"),
    ("POST", r"/containers/create", "container"),
    ("POST", r"/containers/%s/(start|stop|restart|kill|pause|unpause|wait|resize|attach|rename)" % _ID, "empty"),
    ("POST", r"/containers/%s/update" % _ID, "update"),
    ("POST", r"/containers/%s/exec" % _ID, "exec"),
    ("POST", r"/exec/%s/(start|resize)" % _ID, "pass"),
    ("PUT", r"/containers/%s/archive" % _ID, "pass"),
    ("POST", r"/(containers|images|volumes|build)/prune", "pass"),
    ("POST", r"/commit", "pass"),
    ("POST", r"/images/create", "image-create"),
    ("POST", r"/images/load", "pass"),
    ("POST", r"/images/.+/tag", "pass"),
    ("POST", r"/build", "build"),
    ("POST", r"/volumes/create", "volume"),
    ("DELETE", r"/containers/%s" % _ID, "pass"), ("DELETE", r"/images/.+", "pass"),
    ("DELETE", r"/volumes/%s" % _ID, "pass"),
)]
# A request body larger than this is not read to be judged.
MAX_JUDGED_BODY = 4 << 20
NETWORK_MODES = frozenset(("", "default", "host", "none"))
SAFE_LOG_DRIVERS = frozenset(("", "json-file", "local", "none"))
# Fields of a container's HostConfig that only lockbox sets, or that reach the host.
HOST_ONLY_FIELDS = {
    "CgroupParent": "moves the container out of the repository's cgroup (and its network guard)",
    "Runtime": "chooses another container runtime",
    "MaskedPaths": "unmasks kernel files (/proc/kcore, /sys/firmware, ...)",
    "ReadonlyPaths": "makes kernel files writable",
    "DeviceCgroupRules": "gives the container host devices",
    "VolumeDriver": "mounts volumes through a plugin",
}


# The two endpoints whose connection becomes a raw stream (stdin/stdout of a container or exec).
_HIJACKING = re.compile(r"^/(containers/[^/]+/attach|exec/[^/]+/start)$")
# Spellings a server may decode or clean into another path than the one judged here.
_AMBIGUOUS = re.compile(r"%(2f|2e|5c|00)|\\|//|/\.\.?(/|$)", re.IGNORECASE)


def _bare(path):
    bare = path.split("?", 1)[0]
    if not bare.isascii() or not bare.isprintable() or _AMBIGUOUS.search(bare):
        raise Refused("the request path %r is not in plain form (no encoded or repeated slashes, dots or "
                      "backslashes)" % bare[:200])
    return _VERSION.sub("", bare)


def hijacks(method, path):
    """Whether the request may turn its connection into a raw stream (attach, exec start)."""
    return method == "POST" and bool(_HIJACKING.fullmatch(_bare(path)))


def route(method, path):
    """How a request is handled: "pass", or the kind of body to judge; raises Refused."""
    bare = _bare(path)
    for allowed, pattern, how in ENDPOINTS:
        if allowed == method and pattern.fullmatch(bare):
            return how
    raise Refused("the repository sandbox does not allow %s %s (containers, execs, images and volumes of this "
                  "repository only; no networks, plugins, swarm or checkpoints)" % (method, bare))


def check_query(how, query):
    """Query parameters that make the daemon reach outside the repository; ``query``: {name: [values]}."""
    first = {key: (values or [""])[0] for key, values in query.items()}
    if how == "image-create" and first.get("fromSrc", "-") not in ("", "-"):
        raise Refused("importing an image from a URL makes the daemon fetch it from the host (import from a file)")
    if how == "build":
        if first.get("remote"):
            raise Refused("building from a remote context makes the daemon fetch it from the host")
        if first.get("cgroupparent"):
            raise Refused("a build's cgroupparent moves its containers out of the repository's cgroup")
        if first.get("networkmode", "") not in ("", "default", "host"):
            raise Refused("build containers use the host network, as the repository's containers do")
        if first.get("version", "1") != "1":
            raise Refused("BuildKit builds need a session the sandbox does not pass on: set DOCKER_BUILDKIT=0")


def judge_body(how, body, paths):
    """The body to send on, judged (and for containers completed); raises Refused."""
    if how == "empty":
        if body and body.strip() not in (b"", b"{}", b"null"):
            raise Refused("a start with a HostConfig is not allowed (configure the container when creating it)")
        return body
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise Refused("the request body is not JSON: %s" % exc) from exc
    if not isinstance(data, dict):
        raise Refused("the request body is not a JSON object")
    if how == "container":
        _container(data, paths)
    elif how == "update":
        _host_only(data)
        for key in ("Devices", "DeviceRequests"):
            if data.get(key):
                raise Refused("%s gives the container host devices" % key)
    elif how == "exec" and data.get("Privileged"):
        raise Refused("a privileged exec gives the process the whole host")
    elif how == "volume":
        problems = _isolation.named_volume_problems(
            paths, {str(data.get("Name") or "(unnamed)"): {"driver": data.get("Driver"),
                                                           "driver_opts": data.get("DriverOpts")}})
        if problems:
            raise Refused("; ".join(problems))
    return json.dumps(data).encode()


# Present at all (an empty list too: that is Docker's "systempaths=unconfined") is refused.
ANY_VALUE_REFUSED = frozenset(("MaskedPaths", "ReadonlyPaths"))


def _host_only(host):
    for key, why in HOST_ONLY_FIELDS.items():
        value = host.get(key)
        present = value is not None if key in ANY_VALUE_REFUSED else value not in (None, "", [], {})
        if present and not (key == "Runtime" and value == "runc"):
            raise Refused("%s %s" % (key, why))


def _binds(host):
    """HostConfig.Binds ("source:target[:options]") as compose volumes, with their options."""
    parsed = []
    for bind in host.get("Binds") or []:
        parts = str(bind).split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise Refused("bind %r is not source:target[:options]" % bind)
        options = parts[2].split(",") if len(parts) == 3 else []
        kind = "bind" if parts[0].startswith("/") else "volume"
        parsed.append(({"type": kind, "source": parts[0], "target": parts[1], "read_only": "ro" in options},
                       parts[2] if len(parts) == 3 else None))
    return parsed


def _mounts(host):
    """HostConfig.Mounts as compose volumes, and the volumes they create with a driver's options."""
    volumes, named = [], {}
    for mount in host.get("Mounts") or []:
        kind = str(mount.get("Type") or "volume")
        volumes.append({"type": kind, "source": mount.get("Source"), "target": mount.get("Target"),
                        "read_only": bool(mount.get("ReadOnly"))})
        driver = (mount.get("VolumeOptions") or {}).get("DriverConfig") or {}
        if kind == "volume" and driver:
            source = str(mount.get("Source") or "(anonymous)")
            named[source] = {"driver": driver.get("Name"), "driver_opts": driver.get("Options")}
    return volumes, named


def _container(data, paths):
    """The compose rule on the container's host settings, then what only the API can ask."""
    host = data.get("HostConfig") or {}
    data["HostConfig"] = host
    _host_only(host)
    binds = _binds(host)
    mounts, named = _mounts(host)
    volumes = [volume for volume, _options in binds] + mounts
    service = {
        "privileged": host.get("Privileged"), "cap_add": host.get("CapAdd"), "security_opt": host.get("SecurityOpt"),
        "devices": host.get("Devices"), "sysctls": host.get("Sysctls"), "pid": host.get("PidMode"),
        "ipc": host.get("IpcMode"), "uts": host.get("UTSMode"), "cgroup": host.get("CgroupnsMode"),
        "userns_mode": host.get("UsernsMode"), "annotations": host.get("Annotations"), "volumes": volumes,
        "deploy": {"resources": {"reservations": {"devices": host.get("DeviceRequests")}}},
    }
    # Every named volume of this daemon is the repository's own (its options were judged when it was created).
    own_volumes = {v["source"]: {} for v in volumes if v["type"] == "volume" and v.get("source")}
    problems = _isolation.service_problems(paths, "(container)", service, {}, own_volumes)
    problems += _isolation.named_volume_problems(paths, named)
    log_driver = str((host.get("LogConfig") or {}).get("Type") or "")
    if log_driver not in SAFE_LOG_DRIVERS:
        problems.append("log driver %s sends logs from the host (json-file, local and none are allowed)" % log_driver)
    mode = str(host.get("NetworkMode") or "")
    endpoints = (data.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    for network in [mode, *endpoints]:
        if network not in NETWORK_MODES:
            problems.append("network mode %s: a repository's containers use the host network on its own loopback "
                            "addresses" % network)
    if problems:
        raise Refused("; ".join(p.replace("service (container): ", "") for p in problems))
    host["NetworkMode"] = "none" if mode == "none" else "host"
    if endpoints:  # the CLI names the network it asked for; the daemon would look for one called "default"
        data["NetworkingConfig"] = {"EndpointsConfig": {host["NetworkMode"]: {}}}
    # Host paths go on resolved, as judged (dockerd must not follow a link changed in between).
    if binds:
        host["Binds"] = [":".join([v["source"], v["target"]] + ([options] if options is not None else []))
                         for v, options in binds]
    for index, volume in enumerate(mounts):
        if volume["type"] == "bind":
            host["Mounts"][index]["Source"] = volume["source"]
    # Raw sockets in the host network namespace bypass the loopback guard (as for compose).
    drops = [c for c in host.get("CapDrop") or [] if str(c).upper().removeprefix("CAP_") != "NET_RAW"]
    host["CapDrop"] = [*drops, "NET_RAW"]
