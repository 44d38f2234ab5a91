# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a Hub service's compose labels and command may say: one rule for the module and the host.

The Hub is the compose service labelled ``rediacc.install_as=systemd`` whose command is
``hub start …``. Its ``rediacc.hub.*`` labels say how users' environments look (templates),
which host name prefixes lead to which port of a user's container (routes), and the limits
each user's slice gets. Every label is checked against an allowlist: a typo or an unknown
label is an error naming it, never silently ignored.
"""

from __future__ import annotations

import argparse
import posixpath
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import paths as _paths
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import size as _size

INSTALL_AS = "rediacc.install_as"
PREFIX = "rediacc.hub."
FIRST_USER_NETWORK_ID = 32768  # users' daemons; repositories stay below
DEFAULT_TEMPLATE = "default"
DEFAULT_PORT = 7112
TEMPLATE_FIELDS = ("image", "command", "user", "workspace", "shm_size", "docker", "checkpoint", "mode",
                   "limits.cpu", "limits.memory", "hook.on_create", "hook.checkpoint.pre_dump",
                   "hook.checkpoint.post_restore")
DEFAULTS = {"user": "vscode", "workspace": "/workspace", "shm_size": 1 << 30, "docker": "", "checkpoint": False,
            "mode": "persistent"}
MODES = ("persistent", "ephemeral")
DOCKER_MODES = ("", "per-user")
SERVICE_IP_MARKERS = ("__SERVICE_IP__", "${SERVICE_IP}")

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A Docker image reference: registry/path:tag@digest, no spaces or shell characters.
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$")
_CONTAINER_USER = re.compile(r"^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})(:([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}))?$")
_CPU_QUOTA = re.compile(r"^[1-9][0-9]{0,5}%$")
_MEMORY_MAX = re.compile(r"^([1-9][0-9]{0,14}[KMGT]?|[1-9][0-9]?%|100%)$")
_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# User names as identity providers give them (logins, ids, e-mail addresses): one path component.
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
MAX_TEXT = 4096


def labels_of(service):
    """A compose service's labels as a dict (compose prints a dict; a file may hold a list)."""
    labels = (service or {}).get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    return {str(k): "" if v is None else str(v) for k, v in labels.items()}


def is_host_service(service):
    return labels_of(service).get(INSTALL_AS, "").strip().lower() == "systemd"


def check_username(name):
    """The user's key on disk and in unit names (lower case); raise for a name that cannot be one."""
    if not isinstance(name, str) or not _USER.fullmatch(name) or ".." in name:
        raise InvalidInput("user name %r is not accepted: 1-64 characters of letters, digits and . _ @ + -, "
                           "starting with a letter or digit" % (name,))
    return name.lower()


def parse_duration(value, what="duration"):
    """Seconds of ``30m``, ``1h30m``, ``90s``, ``2d`` or ``0`` (disabled); raise otherwise."""
    text = str(value).strip()
    if text == "0":
        return 0
    if not text or _DURATION_PART.sub("", text) or len(text) > 32:
        raise InvalidInput("%s %r is not a duration: use a number with s, m, h or d, such as 30m or 1h30m"
                           % (what, value))
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise InvalidInput("%s must be greater than zero or 0 to disable, got %r" % (what, value))
    return seconds


def _workspace(value):
    workspace = _paths.check_absolute_path(value, "workspace", allow_system=True)
    if workspace == "/":
        raise InvalidInput("the workspace must not be the container's root directory")
    return workspace


def _matching(pattern):
    return lambda value: value if pattern.fullmatch(value) else None


def _one_of(*allowed):
    return lambda value: value if value in allowed else None


# field: (check returning the typed value or None, or raising InvalidInput; what is expected)
_FIELD_CHECKS = {
    "image": (_matching(_IMAGE), "an image reference such as ghcr.io/org/dev:1 (lower-case path, tag, digest)"),
    "user": (_matching(_CONTAINER_USER), "a user or uid, optionally :group or :gid, such as vscode or 1000:1000"),
    "docker": (_one_of(*DOCKER_MODES), "per-user or empty"),
    "mode": (_one_of(*MODES), "persistent or ephemeral"),
    "limits.cpu": (_matching(_CPU_QUOTA), "a systemd CPUQuota such as 200%"),
    "limits.memory": (_matching(_MEMORY_MAX), "a systemd MemoryMax such as 8G, 512M or 50%"),
    "checkpoint": (lambda value: {"true": True, "false": False}.get(value.lower()), "true or false"),
    "workspace": (_workspace, "an absolute path other than /"),
    "shm_size": (lambda value: _size.parse_size(value, "shm_size"), "a size such as 1G"),
}


def _check_field(field, value, problems, where):
    """The typed value of one template field, or None after recording what is wrong with it."""
    label = "%s%s" % (where, field)
    if "\0" in value or len(value) > MAX_TEXT:
        problems.append("%s must be text of at most %d characters" % (label, MAX_TEXT))
        return None
    if field not in _FIELD_CHECKS:
        return value  # command and hooks: shell text run by bash -c inside the user's container
    check, expected = _FIELD_CHECKS[field]
    try:
        checked = check(value.strip())
    except InvalidInput as exc:
        problems.append("%s=%r: %s" % (label, value, exc.msg))
        return None
    if checked is None:
        problems.append("%s=%r: expected %s" % (label, value, expected))
    return checked


def _route(key, value, problems, routes):
    prefix = key[len(PREFIX + "route."):]
    if not _DNS_LABEL.fullmatch(prefix):
        problems.append("%s: the route prefix must be one lower-case DNS label" % key)
    elif not value.strip().isdigit() or not 0 < int(value) < 65536:
        problems.append("%s=%r: expected a port between 1 and 65535" % (key, value))
    else:
        routes[prefix] = int(value)


def _template_label(key, value, problems, named):
    name, _dot, field = key[len(PREFIX + "templates."):].partition(".")
    if not _NAME.fullmatch(name):
        problems.append("%s: a template name is lower-case letters, digits, _ and -" % key)
    elif field not in TEMPLATE_FIELDS:
        problems.append("%s: unknown template field (known: %s)" % (key, ", ".join(TEMPLATE_FIELDS)))
    else:
        named.setdefault(name, {})[field] = _check_field(field, value, problems, "%stemplates.%s." % (PREFIX, name))


def parse_labels(labels):
    """The Hub's configuration from its service labels: {'routes', 'templates', 'default_template'}.

    A template is complete (every field set): named templates start from the flat labels,
    which themselves start from DEFAULTS. Raises InvalidInput listing every problem found.
    """
    problems, routes, flat, named = [], {}, {}, {}
    default_name = None
    for key, value in sorted(labels.items()):
        rest = key[len(PREFIX):] if key.startswith(PREFIX) else None
        if rest is None:
            continue
        if rest.startswith("route."):
            _route(key, value, problems, routes)
        elif rest.startswith("templates."):
            _template_label(key, value, problems, named)
        elif rest == "template":
            default_name = value.strip()
        elif rest in TEMPLATE_FIELDS:
            flat[rest] = _check_field(rest, value, problems, PREFIX)
        else:
            problems.append("%s: unknown Hub label (known: route.<prefix>, template, templates.<name>.<field>, %s)"
                            % (key, ", ".join(TEMPLATE_FIELDS)))
    if not routes:
        problems.append("the Hub service has no %sroute.<prefix>=<port> label: users would reach nothing" % PREFIX)
    base = dict(DEFAULTS, **flat)
    templates = {DEFAULT_TEMPLATE: base} if "image" in flat or not named else {}
    templates.update({name: dict(base, **fields) for name, fields in named.items()})
    default_name = default_name or (DEFAULT_TEMPLATE if DEFAULT_TEMPLATE in templates else None)
    if default_name not in templates:
        problems.append("%stemplate=%r names no template (defined: %s)"
                        % (PREFIX, default_name or "", ", ".join(sorted(templates)) or "none"))
    if problems:
        raise InvalidInput("the Hub's labels are wrong: " + "; ".join(problems))
    return {"routes": routes, "templates": templates, "default_template": default_name}


def expand_command(command, service_ip):
    """The container's command with its loopback IP put in for ``__SERVICE_IP__`` / ``${SERVICE_IP}``."""
    for marker in SERVICE_IP_MARKERS:
        command = command.replace(marker, service_ip)
    return command


class _Arguments(argparse.ArgumentParser):
    def error(self, message):
        raise InvalidInput("hub start: %s" % message)


def start_parser():
    parser = _Arguments(prog="renet hub start", add_help=False, allow_abbrev=False)
    parser.add_argument("--docker-socket", default="")
    parser.add_argument("--network-id", type=int, required=True)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--base-domain", required=True)
    parser.add_argument("--workspace-dir", required=True)
    parser.add_argument("--idle-timeout", default="0")
    parser.add_argument("--checkpoint", action="store_true")
    parser.add_argument("--container-image", default="")
    parser.add_argument("--labels", default="")
    parser.add_argument("--listen", default="")
    parser.add_argument("--env-file", action="append", default=[],
                        help="a compose env file whose HUB_* variables the Hub reads (?PATH: may be missing)")
    return parser


def parse_start(argv, mount=None):
    """The checked options of ``hub start ARGS`` (argv after ``hub start``) as a dict.

    With ``mount``, the workspace directory must lie inside that repository's mount: users'
    data stays in the encrypted image.
    """
    options = vars(start_parser().parse_args(list(argv)))
    problems = []
    if not 0 < options["port"] < 65536:
        problems.append("--port %d is not a port" % options["port"])
    if not 0 < options["network_id"] < FIRST_USER_NETWORK_ID:
        problems.append("--network-id %d is not a repository's networkId" % options["network_id"])
    domain = options["base_domain"].strip().lower()
    if not all(_DNS_LABEL.fullmatch(label) for label in domain.split(".")) or "." not in domain:
        problems.append("--base-domain %r is not a DNS name such as example.com" % options["base_domain"])
    options["base_domain"] = domain
    try:
        options["idle_timeout"] = parse_duration(options["idle_timeout"], "--idle-timeout")
    except InvalidInput as exc:
        problems.append(exc.msg)
    try:
        workspace = _paths.check_absolute_path(options["workspace_dir"], "--workspace-dir")
        if mount and not _paths.is_under(workspace, posixpath.normpath(mount)):
            problems.append("--workspace-dir %s is outside the repository's mount %s: users' data must stay in "
                            "the encrypted image" % (workspace, mount))
        options["workspace_dir"] = workspace
    except InvalidInput as exc:
        problems.append(exc.msg)
    if options["container_image"] and not _IMAGE.fullmatch(options["container_image"]):
        problems.append("--container-image %r is not an image reference" % options["container_image"])
    if problems:
        raise InvalidInput("hub start: " + "; ".join(problems))
    return options


def host_argv(command):
    """``hub start …`` argv of the compose service's command; raise when it is not one."""
    argv = command.split() if isinstance(command, str) else [str(a) for a in command or []]
    if argv[:2] != ["hub", "start"]:
        raise InvalidInput("a rediacc.install_as=systemd service must have the command 'hub start …', got %r"
                           % (" ".join(argv)[:200],))
    return argv[2:]


def route_hosts(routes, base_domain):
    """{host name: container port} for every route prefix."""
    return {"%s.%s" % (prefix, base_domain): port for prefix, port in sorted(routes.items())}


_TRAEFIK_ROUTER = re.compile(r"^traefik\.http\.routers\.([A-Za-z0-9_-]{1,63})\.(rule|entrypoints|tls|tls\.certresolver|"
                             r"middlewares|priority|service)$", re.IGNORECASE)
_TRAEFIK_IGNORED = re.compile(r"^traefik\.(enable|docker\..*|http\.services\.[A-Za-z0-9_-]+\.loadbalancer\.server\."
                              r"(port|scheme))$", re.IGNORECASE)
HUB_TRAEFIK_SERVICE = "rediacc-hub"


def traefik_routers(labels, hosts):
    """Traefik routers of the Hub from its ``traefik.http.routers.*`` labels ({} of none: one per route host).

    Every router leads to the Hub itself (the service is always HUB_TRAEFIK_SERVICE): a label
    cannot point Traefik anywhere else. Returns (routers, labels that were not understood).
    """
    routers, ignored = {}, []
    for key, value in sorted(labels.items()):
        if not key.lower().startswith("traefik."):
            continue
        match = _TRAEFIK_ROUTER.fullmatch(key)
        if not match:
            if not _TRAEFIK_IGNORED.fullmatch(key):
                ignored.append(key)
            continue
        name, field = match.group(1), match.group(2).lower()
        router = routers.setdefault(name, {"service": HUB_TRAEFIK_SERVICE})
        if field == "rule":
            router["rule"] = value
        elif field == "entrypoints":
            router["entryPoints"] = [e.strip() for e in value.split(",") if e.strip()]
        elif field == "middlewares":
            router["middlewares"] = [m.strip() for m in value.split(",") if m.strip()]
        elif field == "tls":
            router.setdefault("tls", {}) if value.strip().lower() == "true" else None
        elif field == "tls.certresolver":
            router.setdefault("tls", {})["certResolver"] = value
        elif field == "priority" and value.strip().isdigit():
            router["priority"] = int(value)
    routers = {name: router for name, router in routers.items() if router.get("rule")}
    if not routers:
        routers = {"hub-%s" % host.split(".")[0]: {"rule": "Host(`%s`)" % host, "service": HUB_TRAEFIK_SERVICE}
                   for host in sorted(hosts)}
    return routers, ignored


# -- login ------------------------------------------------------------------------------------

OAUTH_REQUIRED = ("HUB_OAUTH_CLIENT_ID", "HUB_OAUTH_CLIENT_SECRET", "HUB_OAUTH_AUTHORIZE_URL", "HUB_OAUTH_TOKEN_URL",
                  "HUB_OAUTH_USERINFO_URL", "HUB_OAUTH_USERINFO_PATH")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s#]*)?$")
_LOCAL_PATH = re.compile(r"^/(?![/\\])[\x21-\x7e]*$")


_HUB_VARIABLE = re.compile(r"^HUB_[A-Z0-9_]{1,64}$")


def is_hub_variable(name):
    return bool(_HUB_VARIABLE.fullmatch(str(name)))


def parse_env_file(text):
    """``KEY=VALUE`` lines of a compose env file: {HUB_* key: value}; every other key is left out.

    Comments and blank lines are skipped, ``export`` is allowed, one pair of matching quotes
    around a value is removed; no variable is expanded.
    """
    found = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line[len("export "):].lstrip() if line.startswith("export ") else line
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not is_hub_variable(key):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key] = value
    return found


def oauth_settings(environ):
    """The provider settings from ``HUB_*`` variables; raises InvalidInput naming every one missing or wrong."""
    problems = ["%s is not set" % name for name in OAUTH_REQUIRED if not (environ.get(name) or "").strip()]
    for name in ("HUB_OAUTH_AUTHORIZE_URL", "HUB_OAUTH_TOKEN_URL", "HUB_OAUTH_USERINFO_URL",
                 "HUB_OAUTH_REDIRECT_URI"):
        value = (environ.get(name) or "").strip()
        if value and not _URL.fullmatch(value):
            problems.append("%s=%r is not an http(s) URL" % (name, value))
    path = (environ.get("HUB_OAUTH_USERINFO_PATH") or "").strip()
    if path and not all(part for part in path.split(".")):
        problems.append("HUB_OAUTH_USERINFO_PATH=%r is not a dot-path such as ocs.data.id" % path)
    if problems:
        raise InvalidInput("the Hub's login is not configured: " + "; ".join(problems))

    def split(name):
        return [v for v in re.split(r"[\s,]+", environ.get(name) or "") if v]
    return {"client_id": environ["HUB_OAUTH_CLIENT_ID"].strip(),
            "client_secret": environ["HUB_OAUTH_CLIENT_SECRET"].strip(),
            "authorize_url": environ["HUB_OAUTH_AUTHORIZE_URL"].strip(),
            "token_url": environ["HUB_OAUTH_TOKEN_URL"].strip(),
            "userinfo_url": environ["HUB_OAUTH_USERINFO_URL"].strip(),
            "userinfo_path": path.split("."),
            "redirect_uri": (environ.get("HUB_OAUTH_REDIRECT_URI") or "").strip(),
            "scopes": split("HUB_OAUTH_SCOPES"),
            "allowed_groups": split("HUB_ALLOWED_GROUPS"),
            "admins": {check_username(name) for name in split("HUB_ADMIN_USERS")}}


def safe_next(value):
    """A local path to go to after login (``/`` for anything else: no other host, no scheme)."""
    text = value if isinstance(value, str) else ""
    return text if len(text) <= 2048 and _LOCAL_PATH.fullmatch(text) else "/"


def userinfo_value(document, path):
    """The value at a dot-path of the provider's userinfo document (list indexes allowed), or None."""
    node = document
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, (str, int)) and not isinstance(node, bool) else None


def user_groups(document):
    """The groups a userinfo document names (``groups``, a list of names)."""
    groups = document.get("groups") if isinstance(document, dict) else None
    return sorted({str(g) for g in groups if isinstance(g, (str, int))}) if isinstance(groups, list) else []


def allowed(groups, allowed_groups):
    return not allowed_groups or bool(set(groups) & set(allowed_groups))


def host_prefix(host, routes, base_domain):
    """The route prefix of a request's Host (port ignored), or None for a host the Hub does not serve."""
    name = (host or "").strip().lower()
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    prefix, _dot, domain = name.partition(".")
    return prefix if domain == base_domain and prefix in routes else None


# -- idle -------------------------------------------------------------------------------------

IDLE_CPU_SHARE = 0.05  # of one core, over a sampling interval: above it the environment is working


def still_working(cpu_before_usec, cpu_now_usec, interval_seconds, share=IDLE_CPU_SHARE):
    """Whether the user's slice used more than ``share`` of a core between two samples."""
    if cpu_before_usec is None or cpu_now_usec is None or interval_seconds <= 0:
        return False
    return (cpu_now_usec - cpu_before_usec) / (interval_seconds * 1e6) > share


def idle_for(now, last_active, timeout):
    """True when an environment untouched since ``last_active`` has been idle ``timeout`` seconds (0: never)."""
    return timeout > 0 and now - last_active >= timeout
