# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A repository's loopback network: its /26, and the kernel rules that keep it to itself.

Why cgroup socket-address eBPF rather than nftables: nftables can refuse a connection by
cgroup, but it cannot change the address a process binds. Two repositories running the
same compose file both bind ``0.0.0.0:80``; only a ``bind4`` hook that rewrites that
address to the service's own IP lets both run. The same hooks refuse connections to
loopback addresses outside the repository's /26 (``connect``/``sendmsg``), so one
mechanism does both, with no per-packet cost and nothing to keep in step with a ruleset.

Where the programs live (systemd cgroup driver; all units are plain slices):

- ``rediacc-<networkId>.slice`` (the ``cgroup-parent`` of the repository's dockerd):
  binds of 0.0.0.0/127.0.0.1 go to the repository's own address (.1 of the /26), and
  any bind, connect or send to a loopback address outside the /26 is refused (EPERM),
  except connects and sends to the host's stub resolver 127.0.0.53 port 53 (DNS);
- ``rediacc-<networkId>-s<slot>.slice`` (a service's ``cgroup_parent``): binds of
  0.0.0.0/127.0.0.1 (and ``::``/``::1``) go to the service's IP, connects to localhost
  reach the service itself. A child cgroup's programs run before its parent's, so a
  service's rewrite happens first and the repository's guard then sees its own IP.

Address aliases: a fork that restored its parent's processes from a checkpoint holds the
parent's addresses in those processes (their listening sockets, their memory). Its repository
programs then carry the parent's /26 as an alias: a bind, connect or send to an aliased
address becomes the same offset in the fork's own /26, so the restored service listens on,
and reaches, the fork's own services; never the parent's (without the alias it would get
EPERM). An alias only ever narrows what a process reaches to its own repository.

Binds with port 0 (a client choosing its source port) are left alone, so outgoing
connections to other hosts keep working. Processes outside these slices (the host, the
router) are not affected and reach every repository.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
import struct

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet.state import LOOPBACK, subnet
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import bpf as _bpf
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd
from ansible_collections.lockbox.fleet.plugins.module_utils._tools.bpf import (
    AND32_K,
    CTX_USER_IP4,
    CTX_USER_IP6,
    CTX_USER_PORT,
    EXIT,
    JA,
    JEQ32_K,
    JNE32_K,
    LDX_W,
    MOV32_K,
    MOV32_X,
    MOV64_K,
    OR32_K,
    STX_W,
    u32_of,
)

CGROUP_ROOT = "/sys/fs/cgroup"
REPOSITORY_ADDRESS_OFFSET = 1   # .1 of the /26: binds of processes outside any service
FIRST_SERVICE_OFFSET = 2        # services get .2 onwards, in compose order (see _compose)
ATTACH_POINTS = ("bind4", "connect4", "sendmsg4", "bind6", "connect6", "sendmsg6")
NAME_PREFIX = "lbx_"

_LOCALHOST4 = u32_of(socket.inet_aton("127.0.0.1"))
_FIRST_OCTET_MASK = u32_of(b"\xff\0\0\0")
_LOOPBACK_OCTET = u32_of(b"\x7f\0\0\0")
_MASK26 = u32_of(socket.inet_aton("255.255.255.192"))
_HOST_BITS26 = u32_of(socket.inet_aton("0.0.0.63"))
_V4_MAPPED_WORD = u32_of(b"\0\0\xff\xff")
_V6_LOOPBACK_WORD = u32_of(b"\0\0\0\x01")
STUB_RESOLVER = "127.0.0.53"
_RESOLVER4 = u32_of(socket.inet_aton(STUB_RESOLVER))
_DNS_PORT = u32_of(struct.pack(">HH", 53, 0))  # user_port: network order in the low 16 bits


def repository_slice(network_id):
    return "rediacc-%d.slice" % network_id


def service_slice(network_id, slot):
    return "rediacc-%d-s%d.slice" % (network_id, slot)


def slice_cgroup(slice_name, root=CGROUP_ROOT):
    """systemd nests slices by their dashes: a-b-c.slice is a.slice/a-b.slice/a-b-c.slice."""
    parts = slice_name[:-len(".slice")].split("-")
    chain = ["-".join(parts[:i + 1]) + ".slice" for i in range(len(parts))]
    return posixpath.join(root, *chain)


def address(network_id, offset):
    return str(ipaddress.IPv4Address(int(LOOPBACK) + network_id + offset))


def _rules(attach, target, guard_base, alias_bases=(), egress=None):
    """Instructions of one program.

    ``target``: the address binds of 0.0.0.0/127.0.0.1 (and connects to localhost) become.
    ``guard_base``: when set, refuse loopback addresses outside the /26 at this base.
    ``alias_bases``: /26 bases whose addresses become the same offset in ``guard_base``'s /26.
    ``egress``: None (no limit), or the IPv4 networks connects and sends may reach beyond
    loopback (a fork's allowlist; real IPv6 destinations are then refused).
    Registers: w2 = the IPv4 address in question, r1 = context (never clobbered).
    """
    family6 = attach.endswith("6")
    limited = egress is not None and guard_base is not None and not attach.startswith("bind")
    foreign6 = "refuse" if limited else "allow"
    word = CTX_USER_IP6 + 12 if family6 else CTX_USER_IP4
    target_word = u32_of(socket.inet_aton(target))
    items = []
    if attach.startswith("bind"):
        items += [(LDX_W, 3, 1, CTX_USER_PORT, 0),
                  (JEQ32_K, 3, 0, "allow", 0)]          # port 0: a client's bind, leave it
    if family6:
        items += [(LDX_W, 3, 1, CTX_USER_IP6, 0), (JNE32_K, 3, 0, foreign6, 0),
                  (LDX_W, 3, 1, CTX_USER_IP6 + 4, 0), (JNE32_K, 3, 0, foreign6, 0),
                  (LDX_W, 3, 1, CTX_USER_IP6 + 8, 0),
                  (LDX_W, 2, 1, word, 0),
                  (JEQ32_K, 3, 0, "mapped", _V4_MAPPED_WORD),
                  (JNE32_K, 3, 0, foreign6, 0),             # a real IPv6 address
                  (JEQ32_K, 2, 0, "rewrite6", 0),           # ::
                  (JEQ32_K, 2, 0, "rewrite6", _V6_LOOPBACK_WORD),  # ::1
                  (JA, 0, 0, foreign6, 0),
                  ("label", "rewrite6"),
                  (MOV32_K, 3, 0, 0, _V4_MAPPED_WORD),
                  (STX_W, 1, 3, CTX_USER_IP6 + 8, 0),
                  (JA, 0, 0, "rewrite", 0),
                  ("label", "mapped")]
    else:
        items += [(LDX_W, 2, 1, word, 0)]
    local = [(JEQ32_K, 2, 0, "rewrite", _LOCALHOST4)]
    if attach.startswith("bind") or attach.startswith("connect"):
        local.insert(0, (JEQ32_K, 2, 0, "rewrite", 0))  # 0.0.0.0 (a connect to it reaches localhost)
    items += [*local,
              (JA, 0, 0, "guard", 0),
              ("label", "rewrite"),
              (MOV32_K, 2, 0, 0, target_word),
              (STX_W, 1, 2, word, 0),
              ("label", "guard")]
    own_base = u32_of(socket.inet_aton(guard_base)) if guard_base is not None else None
    for index, alias in enumerate(alias_bases):
        skip = "not_alias%d" % index
        items += [(MOV32_X, 3, 2, 0, 0), (AND32_K, 3, 0, 0, _MASK26),
                  (JNE32_K, 3, 0, skip, u32_of(socket.inet_aton(alias))),
                  (AND32_K, 2, 0, 0, _HOST_BITS26), (OR32_K, 2, 0, 0, own_base),   # same offset, own /26
                  (STX_W, 1, 2, word, 0),
                  ("label", skip)]
    if guard_base is not None:
        if not attach.startswith("bind"):
            # The host's stub resolver (systemd-resolved), port 53 only: containers share the
            # host's /etc/resolv.conf, which names it. Nothing else outside the /26.
            items += [(JNE32_K, 2, 0, "not_resolver", _RESOLVER4),
                      (LDX_W, 3, 1, CTX_USER_PORT, 0),
                      (JEQ32_K, 3, 0, "allow", _DNS_PORT),
                      ("label", "not_resolver")]
        # Not loopback: another host. Not ours to judge, unless the repository is a fork.
        items += [(MOV32_X, 3, 2, 0, 0), (AND32_K, 3, 0, 0, _FIRST_OCTET_MASK),
                  (JNE32_K, 3, 0, "outside" if limited else "allow", _LOOPBACK_OCTET),
                  (MOV32_X, 3, 2, 0, 0), (AND32_K, 3, 0, 0, _MASK26),
                  (JEQ32_K, 3, 0, "allow", u32_of(socket.inet_aton(guard_base))),
                  (JA, 0, 0, "refuse", 0)]                             # another repository's address
        if limited:
            items.append(("label", "outside"))
            for network in egress:
                net = ipaddress.IPv4Network(network)
                items += [(MOV32_X, 3, 2, 0, 0), (AND32_K, 3, 0, 0, u32_of(net.netmask.packed)),
                          (JEQ32_K, 3, 0, "allow", u32_of(net.network_address.packed))]
            items.append((JA, 0, 0, "refuse", 0))
    items += [("label", "allow"), (MOV64_K, 0, 0, 0, 1), (EXIT, 0, 0, 0, 0)]
    if guard_base is not None or limited:
        items += [("label", "refuse"), (MOV64_K, 0, 0, 0, 0), (EXIT, 0, 0, 0, 0)]
    return items


def check_egress(networks):
    """A fork's egress allowlist as sorted IPv4 networks (``10.0.0.0/8``, ``192.0.2.10``); a clear error else."""
    checked = set()
    for written in networks or []:
        try:
            net = ipaddress.ip_network(str(written), strict=False)
        except ValueError as exc:
            raise InvalidInput("egress_allow entry %r is not an IPv4 address or network (%s)" % (written, exc)) from exc
        if net.version != 4:
            raise InvalidInput("egress_allow entry %r is IPv6: forks reach IPv4 networks only" % (written,))
        if net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            # The guard judges loopback before the allowlist: a wider entry never opens it either.
            raise InvalidInput("egress_allow entry %r is loopback, where other repositories live: a fork reaches "
                               "its own /26 and the host's resolver, and no other loopback address" % (written,))
        checked.add(str(net))
    return sorted(checked, key=ipaddress.IPv4Network)


def _base(network_id):
    return subnet(network_id).split("/", maxsplit=1)[0]


def repository_programs(network_id, aliases=(), egress=None):
    """The guard of the repository's slice; ``aliases``: networkIds whose addresses mean its own;
    ``egress``: for a fork, the networks beyond loopback it may reach (None: no limit)."""
    own = address(network_id, REPOSITORY_ADDRESS_OFFSET)
    alias_bases = [_base(a) for a in sorted(set(aliases)) if a != network_id]
    return [_bpf.Program("%sr%d_%s" % (NAME_PREFIX, network_id, a[:1] + a[-1]), a,
                         _rules(a, own, _base(network_id), alias_bases, egress))
            for a in ATTACH_POINTS]


def egress_of(record):
    """None for a grand repository (no limit); a fork's allowlist (empty: nothing beyond loopback)."""
    return list(record.get("egress_allow") or []) if record.get("is_fork") else None


def service_programs(network_id, slot):
    ip = address(network_id, FIRST_SERVICE_OFFSET + slot)
    return [_bpf.Program("%ss%d_%d%s" % (NAME_PREFIX, network_id, slot, a[:1] + a[-1]), a, _rules(a, ip, None))
            for a in ATTACH_POINTS]


class CgroupPrograms:
    """Observe, plan and apply the lockbox programs of one cgroup (other programs are left alone)."""

    def __init__(self, bpf, path):
        self.bpf = bpf
        self.path = path

    def _open(self):
        try:
            return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return None

    def observe(self):
        """{attach point: [tag, ...]} of lockbox programs on the cgroup; None if it does not exist."""
        fd = self._open()
        if fd is None:
            return None
        try:
            out = {}
            for attach in ATTACH_POINTS:
                programs = self.bpf.attached(fd, attach)
                out[attach] = [tag for prog_fd, name, tag in programs if name.startswith(NAME_PREFIX)]
                for prog_fd, _name, _tag in programs:
                    os.close(prog_fd)
            return out
        finally:
            os.close(fd)

    def wanted_tags(self, programs):
        """Tags the kernel gives these programs (loaded and released again: no lasting change)."""
        tags = {}
        for program in programs:
            fd = self.bpf.load(program)
            try:
                tags[program.attach] = self.bpf.info(fd)[1]
            finally:
                os.close(fd)
        return tags

    def converge(self, programs):
        """Attach ``programs`` (one per attach point) and detach any other lockbox program there."""
        fd = self._open()
        if fd is None:
            raise LockboxError("cgroup %s does not exist" % self.path)
        try:
            changed = False
            for program in programs:
                prog_fd = self.bpf.load(program)
                try:
                    tag = self.bpf.info(prog_fd)[1]
                    present = self.bpf.attached(fd, program.attach)
                    try:
                        ours = [(pfd, t) for pfd, name, t in present if name.startswith(NAME_PREFIX)]
                        if [t for _pfd, t in ours] == [tag]:
                            continue
                        self.bpf.attach(fd, prog_fd, program.attach)   # new first: never a moment without
                        for old_fd, _tag in ours:
                            self.bpf.detach(fd, old_fd, program.attach)
                        changed = True
                    finally:
                        for pfd, _name, _tag in present:
                            os.close(pfd)
                finally:
                    os.close(prog_fd)
            return changed
        finally:
            os.close(fd)

    def clear(self):
        """Detach every lockbox program; True when something was detached."""
        fd = self._open()
        if fd is None:
            return False
        try:
            changed = False
            for attach in ATTACH_POINTS:
                present = self.bpf.attached(fd, attach)
                try:
                    for prog_fd, name, _tag in present:
                        if name.startswith(NAME_PREFIX):
                            self.bpf.detach(fd, prog_fd, attach)
                            changed = True
                finally:
                    for prog_fd, _name, _tag in present:
                        os.close(prog_fd)
            return changed
        finally:
            os.close(fd)


def in_sync(observed, wanted_tags):
    return observed is not None and all(observed.get(a) == [t] for a, t in wanted_tags.items())


def _service_slices(network_id, root=CGROUP_ROOT):
    """Service slices that exist under the repository's slice, as (slot, slice name)."""
    parent = slice_cgroup(repository_slice(network_id), root)
    prefix = "rediacc-%d-s" % network_id
    found = []
    if os.path.isdir(parent):
        for entry in sorted(os.listdir(parent)):
            if entry.startswith(prefix) and entry.endswith(".slice") and entry[len(prefix):-6].isdigit():
                found.append((int(entry[len(prefix):-6]), entry))
    return found


def describe_network(network_id, observed=None):
    return {
        "network_id": network_id,
        "subnet": subnet(network_id),
        "address": address(network_id, REPOSITORY_ADDRESS_OFFSET),
        "slice": repository_slice(network_id),
        "cgroup": slice_cgroup(repository_slice(network_id)),
        "guarded": bool(observed) and all(observed.get(a) for a in ATTACH_POINTS),
        "services": [{"slot": slot, "slice": name, "address": address(network_id, FIRST_SERVICE_OFFSET + slot)}
                     for slot, name in _service_slices(network_id)],
    }


def _start_slice(runner, slice_name):
    # A slice needs no unit file; starting it creates its cgroup, which stays while it is active.
    _systemd.systemctl(runner, "start", slice_name)


def _record_egress(state_dir, name, egress):
    with _state.HostState(state_dir) as host:
        record = host.get(name)
        record["egress_allow"] = egress
        host.put(record)


def converge_network(runner, name, *, state, state_dir=_state.DEFAULT_STATE_DIR, check_mode=False, bpf=None,
                     egress_allow=None):
    """present: the repository's slice exists with its guard programs; absent: no slice, no program.

    ``egress_allow`` (a fork's only): replaces the networks beyond loopback the fork may reach.
    """
    if state not in ("present", "absent"):
        raise InvalidInput("state must be present or absent, got %r" % (state,))
    record = _state.ready_record(state_dir, name)
    network_id = record["network_id"]
    aliases = record.get("address_aliases") or []
    actions = []
    if egress_allow is not None:
        if not record.get("is_fork"):
            raise InvalidInput("egress_allow is for forks: %s is a grand repository, whose egress is not limited"
                               % name)
        wanted = check_egress(egress_allow)
        if wanted != (record.get("egress_allow") or []):
            actions.append(Action("record-egress", "let %s reach %s beyond its own addresses" % (
                name, ", ".join(wanted) or "nothing"), lambda: _record_egress(state_dir, name, wanted)))
        record = dict(record, egress_allow=wanted)
    egress = egress_of(record)
    bpf = bpf or _bpf.Bpf()
    repo_slice = repository_slice(network_id)
    cgroup = CgroupPrograms(bpf, slice_cgroup(repo_slice))
    observed = cgroup.observe()
    if state == "present":
        programs = repository_programs(network_id, aliases, egress)
        if observed is None:
            actions.append(Action("start-slice", "start %s" % repo_slice, lambda: _start_slice(runner, repo_slice)))
        # Loading the programs to learn their tags is only needed when some are attached already.
        if observed is None or not in_sync(observed, cgroup.wanted_tags(programs)):
            actions.append(Action("attach", "attach the guard programs of %s to %s%s" % (
                subnet(network_id), repo_slice,
                " (addresses of %s mean its own)" % ", ".join(subnet(a) for a in aliases) if aliases else ""),
                lambda: cgroup.converge(programs)))
    else:
        actions += [Action(*step) for step in removal_steps(runner, network_id, bpf)]
    reports = apply_plan(actions, check_mode)
    after = observed if check_mode else cgroup.observe()
    return {"changed": bool(actions), "actions": reports,
            "network": dict(describe_network(network_id, after), name=name, egress_allow=egress)}


def _ensure_slice_programs(runner, unit, programs, bpf):
    cgroup = CgroupPrograms(bpf or _bpf.Bpf(), slice_cgroup(unit))
    changed = False
    if cgroup.observe() is None:
        _start_slice(runner, unit)
        changed = True
    return cgroup.converge(programs) or changed


def ensure_guard(runner, network_id, aliases=(), bpf=None, egress=None):
    """The repository's slice with its guard programs; True when something changed."""
    return _ensure_slice_programs(runner, repository_slice(network_id),
                                  repository_programs(network_id, aliases, egress), bpf)


def converge_service(runner, network_id, slot, bpf=None):
    """The slice of one service with its rewrite programs (used by renet compose before up)."""
    return _ensure_slice_programs(runner, service_slice(network_id, slot), service_programs(network_id, slot), bpf)


def removal_steps(runner, network_id, bpf=None):
    """(name, detail, apply) steps that remove a repository's slices and programs."""
    repo_slice = repository_slice(network_id)
    cgroup = CgroupPrograms(bpf or _bpf.Bpf(), slice_cgroup(repo_slice))
    if not os.path.isdir(cgroup.path):
        return []
    # Service slices first (their programs go with their cgroups), then the repository's.
    steps = [("stop-slice", "stop %s" % service, lambda unit=service: _systemd.systemctl(runner, "stop", unit))
             for _slot, service in _service_slices(network_id)]
    return [*steps, ("detach", "detach the guard programs from %s" % repo_slice, cgroup.clear),
            ("stop-slice", "stop %s" % repo_slice, lambda: _systemd.systemctl(runner, "stop", repo_slice))]


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.loopback_net."""
    return converge_network(runner, params["name"], state=params["state"],
                            state_dir=params.get("state_dir") or _state.DEFAULT_STATE_DIR, check_mode=check_mode,
                            egress_allow=params.get("egress_allow"))
