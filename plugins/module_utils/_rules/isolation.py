# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a compose model may ask of the host: an allowlist, checked before anything starts.

A repository's containers share the host's kernel and network namespace, so every setting
that reaches outside the container is judged here, once, for ``renet compose`` and the
modules alike. The rule is an allowlist: a service key that is not known to be harmless is
refused, and a host path is allowed only when, resolved the way dockerd will resolve it
(relative to the project, ``..``, repeated slashes, ``.``, symbolic links on this host, at
this moment), it lies inside the repository's own mount — and not in or above the
repository's ``.rediacc`` directory, whose daemon data-root would let a container rewrite
other containers' configuration — or is one of the few read-only files in HARMLESS_READ_ONLY.
Accepted paths are handed to Docker in their resolved form.
"""

from __future__ import annotations

import os
import posixpath

from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.paths import is_under

# Service keys with no reach outside the container (or whose reach is checked below).
PLAIN_KEYS = frozenset((
    "annotations", "attach", "blkio_config", "command", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset",
    "depends_on", "deploy", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "environment",
    "expose", "external_links", "extra_hosts", "group_add", "healthcheck", "hostname", "image", "init",
    "labels", "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness",
    "memswap_limit", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pids_limit",
    "platform", "ports", "profiles", "pull_policy", "read_only", "restart", "scale", "shm_size",
    "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "tmpfs", "tty", "ulimits", "user",
    "working_dir", "cgroup_parent", "cap_drop",
))
CHECKED_KEYS = frozenset((
    "build", "cap_add", "cgroup", "configs", "devices", "env_file", "ipc", "pid", "post_start", "pre_stop",
    "privileged", "secrets", "security_opt", "sysctls", "userns_mode", "uts", "volumes", "volumes_from",
))
# Docker's default capabilities: asking for one again changes nothing. NET_RAW is not among
# them: in the host network namespace it would let a container read and forge every
# repository's loopback traffic, so the rewrite drops it (see _compose).
DEFAULT_CAPS = frozenset(("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                          "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"))
# What the rediacc.checkpoint=true label grants (for programs that checkpoint themselves; the
# dumps and restores lockbox asks for are CRIU's as root, through runc). Never NET_ADMIN: in the
# host network namespace a container could add a netfilter DNAT rule and reach another
# repository behind an address of its own, past the guard (which judges the address a program
# connects to, before netfilter rewrites it).
CHECKPOINT_CAPS = ("CHECKPOINT_RESTORE", "SYS_PTRACE")
# Annotation namespaces the runtime acts on as root on the host: runc turns org.systemd.property.*
# into properties of the container's systemd scope (Slice=, DeviceAllow=, ...) and org.criu.config
# chooses CRIU's configuration file (action scripts run as root). lockbox sets org.criu.config itself.
RUNTIME_ANNOTATIONS = ("org.systemd.", "org.criu.", "run.oci.", "io.containerd.", "io.kubernetes.",
                       "com.docker.", "org.opencontainers.")
SAFE_SECURITY_OPTS = frozenset(("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"))
# Host files a container may see, read-only: they only tell the time zone (/etc/localtime is
# a link into /usr/share/zoneinfo and is judged where it resolves).
HARMLESS_READ_ONLY = ("/etc/localtime", "/etc/timezone", "/usr/share/zoneinfo")
PRIVATE_DIR = ".rediacc"
TOP_LEVEL_KEYS = frozenset(("name", "version", "services", "networks", "volumes", "secrets", "configs"))


def _caps(values):
    return [str(v).upper().removeprefix("CAP_") for v in values or []]


def is_checkpointed(service):
    labels = service.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    return str(labels.get("rediacc.checkpoint", "")).lower() == "true"


class HostPaths:
    """Resolves host paths as dockerd will and judges them against one repository's mount.

    The host's secrets tree (tmpfs, one directory per networkId) is judged apart: the
    repository's own directory may be read (its file secrets); any other path in the tree
    names other repositories' secrets and lands in ``foreign_secrets``, which no ``--unsafe``
    lifts. (A directory above the tree is only "outside the mount": ``--unsafe`` is the
    operator's word that the service may see the host.)
    """

    def __init__(self, mount, project_dir, realpath=os.path.realpath, network_id=None, private=True):
        """``private``: the mount holds lockbox's private directory (a repository's does; a Hub
        user's workspace, whose daemon's data-root lies beside it, does not)."""
        self.realpath = realpath
        self.mount = realpath(mount)
        self.private = posixpath.join(self.mount, PRIVATE_DIR) if private else None
        self.project_dir = project_dir
        self.secrets_root = realpath(_secrets.SECRETS_ROOT)
        self.own_secrets = realpath(_secrets.directory(network_id)) if network_id is not None else None
        self.foreign_secrets = []

    def resolve(self, written):
        path = written if posixpath.isabs(written) else posixpath.join(self.project_dir, written)
        resolved = self.realpath(path)
        # POSIX keeps a leading "//" apart; Linux (and so dockerd) does not.
        return "/" + resolved.lstrip("/") if resolved.startswith("//") else resolved

    def judge(self, written, *, read_only=False, whole_tree=True):
        """(resolved path, None) when allowed, else (resolved path or None, why not)."""
        if not isinstance(written, str) or not written:
            return None, "an empty host path"
        if "\0" in written:
            return None, "a host path with a NUL byte"
        resolved = self.resolve(written)
        if is_under(resolved, self.secrets_root):
            return resolved, self._secrets_problem(written, resolved, read_only)
        return resolved, self._host_problem(resolved, read_only, whole_tree)

    def _host_problem(self, resolved, read_only, whole_tree):
        if is_under(resolved, self.mount):
            # A bind of the mount root exposes .rediacc (the daemon's data-root) beneath it.
            if self.private and (is_under(resolved, self.private) or (whole_tree and resolved == self.mount)):
                return "the repository's private %s directory (its Docker data-root) is not for containers" \
                    % PRIVATE_DIR
            return None
        if read_only and any(is_under(resolved, tree) for tree in HARMLESS_READ_ONLY):
            return None
        return "outside the repository's mount %s" % self.mount

    def _secrets_problem(self, written, resolved, read_only):
        own = self.own_secrets is not None and is_under(resolved, self.own_secrets)
        if not own:
            self.foreign_secrets.append(written)
            return "it holds other repositories' secrets (refused, --unsafe or not)"
        return None if read_only else "the repository's own secrets may only be read (mount them read-only)"


def _path_problem(paths, owner, what, written, **kwargs):
    resolved, why = paths.judge(written, **kwargs)
    if why is None:
        return resolved, None
    shown = written if resolved in (None, written) else "%s (resolves to %s)" % (written, resolved)
    return resolved, "%s: %s %s: %s" % (owner, what, shown, why)


def _volume_problems(paths, name, service, top_volumes):
    problems = []
    for index, item in enumerate(service.get("volumes") or []):
        volume = item
        if isinstance(item, str):  # short syntax (compose config normally expands it)
            parts = item.split(":")
            if len(parts) == 1:  # an anonymous volume
                service["volumes"][index] = {"type": "volume", "target": parts[0]}
                continue
            source = parts[0]
            volume = {"type": "bind" if source.startswith((".", "/", "~")) else "volume", "source": source,
                      "target": parts[1], "read_only": len(parts) > 2 and "ro" in parts[2].split(",")}
            service["volumes"][index] = volume
        kind = volume.get("type")
        if kind == "bind":
            resolved, problem = _path_problem(paths, "service %s" % name, "bind mount of", volume.get("source"),
                                              read_only=bool(volume.get("read_only")))
            if problem:
                problems.append(problem)
            else:
                volume["source"] = resolved
        elif kind == "volume":
            source = volume.get("source")
            if source and source not in top_volumes:
                problems.append("service %s: volume %s is not declared under the top-level volumes" % (name, source))
        elif kind != "tmpfs":
            problems.append("service %s: volume type %s is not allowed (bind, volume and tmpfs are)" % (name, kind))
    return problems


def named_volume_problems(paths, volumes):
    """Top-level volumes: the local driver, and driver_opts only for a bind inside the mount or tmpfs."""
    problems = []
    for name, declared in (volumes or {}).items():
        volume = declared or {}
        driver = volume.get("driver") or "local"
        if driver != "local":
            problems.append("volume %s: driver %s is not allowed (only the local driver)" % (name, driver))
            continue
        opts = volume.get("driver_opts") or {}
        if not opts:
            continue
        kind, options = str(opts.get("type", "")), str(opts.get("o", "")).split(",")
        if kind == "tmpfs" and "bind" not in options:
            continue
        if "bind" in options or "rbind" in options:
            resolved, problem = _path_problem(paths, "volume %s" % name, "driver_opts device",
                                              str(opts.get("device", "")))
            if problem:
                problems.append(problem)
            else:
                opts["device"] = resolved
            continue
        problems.append("volume %s: driver_opts type %s mounts a host device or remote filesystem "
                        "(only tmpfs and binds inside the repository are allowed)" % (name, kind or "(none)"))
    return problems


def _file_problems(paths, top, kind):
    """Top-level secrets/configs read from a file are bind-mounted into containers."""
    problems = []
    for name, item in (top or {}).items():
        if isinstance(item, dict) and item.get("file"):
            resolved, problem = _path_problem(paths, "%s %s" % (kind, name), "file", item["file"],
                                              read_only=True, whole_tree=False)
            if problem:
                problems.append(problem)
            else:
                item["file"] = resolved
    return problems


def _build_problems(paths, name, build):
    if not build:
        return []
    if isinstance(build, str):
        build = {"context": build}
    owner, problems = "service %s" % name, []
    contexts = [("build context", build.get("context") or ".")]
    contexts += [("additional build context %s" % key, value)
                 for key, value in (build.get("additional_contexts") or {}).items()
                 if "://" not in str(value) and not str(value).startswith(("service:", "target:"))]
    for what, written in contexts:
        if "://" in str(written):
            problems.append("%s: %s %s: remote contexts are not allowed" % (owner, what, written))
            continue
        problems += [p for p in [_path_problem(paths, owner, what, str(written), whole_tree=False)[1]] if p]
    for key in ("cache_from", "cache_to"):
        for entry in build.get(key) or []:
            # type=local reads (cache_from) or writes (cache_to) a host directory, as root.
            fields = dict(part.split("=", 1) for part in str(entry).split(",") if "=" in part)
            if fields.get("type") == "local":
                written = fields.get("src") or fields.get("dest") or ""
                problems += [p for p in [_path_problem(paths, owner, "build %s" % key, written,
                                                       whole_tree=False)[1]] if p]
    for entry in build.get("ssh") or []:
        problems.append("%s: build ssh %s forwards the host's SSH keys or agent" % (owner, entry))
    if build.get("privileged") or build.get("entitlements") or build.get("network") == "host":
        problems.append("%s: privileged builds, build entitlements and host-network builds are not allowed" % owner)
    return problems


def _namespace_problems(name, service, checkpointed):
    problems = []
    for key, meaning in (("pid", "process"), ("ipc", "IPC"), ("uts", "UTS"), ("cgroup", "cgroup")):
        value = str(service.get(key) or "")
        if value == "host" and not (key == "cgroup" and checkpointed):
            problems.append("service %s: %s: host shares the host's %s namespace" % (name, key, meaning))
        elif value.startswith("container:"):
            problems.append("service %s: %s: %s joins a container outside the project" % (name, key, value))
    if str(service.get("userns_mode") or "") == "host" and not checkpointed:
        problems.append("service %s: userns_mode: host is only for services labelled rediacc.checkpoint=true"
                        % name)
    return problems


def annotations_of(service):
    """A service's annotations as a mapping (compose accepts a list of KEY=VALUE too)."""
    annotations = service.get("annotations") or {}
    if isinstance(annotations, list):
        return dict(str(item).partition("=")[::2] for item in annotations)
    return {str(key): value for key, value in annotations.items()}


def _annotation_problems(name, service):
    return ["service %s: annotation %s is read by the container runtime on the host (systemd unit properties, "
            "CRIU configuration)" % (name, key)
            for key in sorted(annotations_of(service)) if key.startswith(RUNTIME_ANNOTATIONS)]


def service_problems(paths, name, service, services, top_volumes):
    """What in one service reaches outside the repository, as messages (``service`` is edited in place)."""
    checkpointed = is_checkpointed(service)
    problems = ["service %s: %s is not allowed in a repository (unknown settings are refused)" % (name, key)
                for key in service if key not in PLAIN_KEYS and key not in CHECKED_KEYS]
    if service.get("privileged"):
        problems.append("service %s: privileged: true gives the container the whole host" % name)
    problems += _annotation_problems(name, service)
    problems += _namespace_problems(name, service, checkpointed)
    allowed_caps = DEFAULT_CAPS | (frozenset(CHECKPOINT_CAPS) if checkpointed else frozenset())
    extra = [c for c in _caps(service.get("cap_add")) if c not in allowed_caps]
    if extra:
        granted = " and CRIU's" if checkpointed else ", and CRIU's for rediacc.checkpoint=true"
        problems.append("service %s: cap_add %s is not allowed (only Docker's defaults%s)"
                        % (name, ", ".join(extra), granted))
    unsafe_opts = [str(o) for o in service.get("security_opt") or [] if str(o) not in SAFE_SECURITY_OPTS]
    if unsafe_opts:
        problems.append("service %s: security_opt %s is not allowed (seccomp, AppArmor and SELinux stay on)"
                        % (name, ", ".join(unsafe_opts)))
    if service.get("devices"):
        problems.append("service %s: devices gives the container host devices" % name)
    for key in [k for k in (service.get("sysctls") or {}) if str(k).startswith("net.")]:
        problems.append("service %s: sysctl %s would change the host's network (host network namespace)"
                        % (name, key))
    for key in ("post_start", "pre_stop"):
        if any(isinstance(hook, dict) and hook.get("privileged") for hook in service.get(key) or []):
            problems.append("service %s: a privileged %s hook gives the container the whole host" % (name, key))
    reservations = ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    if reservations.get("devices"):
        problems.append("service %s: deploy.resources.reservations.devices gives the container host devices"
                        % name)
    for source in service.get("volumes_from") or []:
        other = str(source).split(":", 1)
        target = other[1] if other[0] in ("service", "container") and len(other) > 1 else other[0]
        if other[0] == "container" or target not in services:
            problems.append("service %s: volumes_from %s is not a service of this project" % (name, source))
    for written in [e.get("path") if isinstance(e, dict) else e for e in service.get("env_file") or []]:
        _resolved, problem = _path_problem(paths, "service %s" % name, "env_file", str(written or ""),
                                           read_only=False, whole_tree=False)
        if problem:
            problems.append(problem)
    problems += _volume_problems(paths, name, service, top_volumes)
    problems += _build_problems(paths, name, service.get("build"))
    return problems


def model_problems(model, mount, project_dir, realpath=os.path.realpath, network_id=None):
    """(every reach outside the repository in a compose model, the host paths of other repositories' secrets).

    Accepted host paths are resolved in place.
    """
    paths = HostPaths(mount, project_dir, realpath, network_id)
    services = model.get("services") or {}
    top_volumes = model.get("volumes") or {}
    problems = ["%s is not allowed in a repository's compose file" % key
                for key in model if key not in TOP_LEVEL_KEYS and not str(key).startswith("x-")]
    for name, service in services.items():
        problems += service_problems(paths, name, service or {}, services, top_volumes)
    problems += named_volume_problems(paths, top_volumes)
    problems += _file_problems(paths, model.get("secrets"), "secret")
    problems += _file_problems(paths, model.get("configs"), "config")
    return problems, paths.foreign_secrets
