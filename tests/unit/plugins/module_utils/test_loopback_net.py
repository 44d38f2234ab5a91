# SPDX-License-Identifier: GPL-3.0-or-later
"""The loopback rules, executed: a small interpreter runs the exact bytecode the kernel gets.

Only the opcodes _bpf emits are implemented; an unknown opcode fails the test, so a
program cannot pass here by using something the interpreter ignores. The kernel's own
verdict on the same programs is checked in the guest (molecule `apps` scenario).
"""

import socket
import struct

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import bpf as _bpf


def run(program, family, ip, port=8080):  # noqa: PLR0912 - an interpreter is one branch per opcode
    """Execute ``program`` on a bpf_sock_addr context; returns (verdict, address after)."""
    ctx = bytearray(64)
    if family == 4:
        struct.pack_into("<I", ctx, 0, socket.AF_INET)
        ctx[4:8] = socket.inet_aton(ip)
    else:
        struct.pack_into("<I", ctx, 0, socket.AF_INET6)
        ctx[8:24] = socket.inet_pton(socket.AF_INET6, ip)
    struct.pack_into(">H", ctx, 24, port)
    regs = [0] * 11
    code = program.bytecode
    pc = 0
    for _step in range(1000):
        op, regbyte, off, imm = struct.unpack_from("<BBhi", code, pc * 8)
        dst, src = regbyte & 0xF, regbyte >> 4
        uimm = imm & 0xFFFFFFFF
        pc += 1
        if op == _bpf.LDX_W:
            assert src == 1 and off % 4 == 0
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == _bpf.STX_W:
            assert dst == 1
            struct.pack_into("<I", ctx, off, regs[src] & 0xFFFFFFFF)
        elif op == _bpf.MOV64_K:
            regs[dst] = imm & 0xFFFFFFFFFFFFFFFF
        elif op == _bpf.MOV32_K:
            regs[dst] = uimm
        elif op == _bpf.MOV32_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == _bpf.AND32_K:
            regs[dst] = regs[dst] & uimm
        elif op == _bpf.OR32_K:
            regs[dst] = (regs[dst] | uimm) & 0xFFFFFFFF
        elif op == _bpf.JEQ32_K:
            pc += off if (regs[dst] & 0xFFFFFFFF) == uimm else 0
        elif op == _bpf.JNE32_K:
            pc += off if (regs[dst] & 0xFFFFFFFF) != uimm else 0
        elif op == _bpf.JA:
            pc += off
        elif op == _bpf.EXIT:
            after = socket.inet_ntoa(bytes(ctx[4:8])) if family == 4 else \
                socket.inet_ntop(socket.AF_INET6, bytes(ctx[8:24]))
            return regs[0], after
        else:
            raise AssertionError("opcode %#x is not one the programs should use" % op)
    raise AssertionError("program did not exit")


def programs(kind, network_id=6336, slot=0):
    found = _loopback_net.repository_programs(network_id) if kind == "repo" else \
        _loopback_net.service_programs(network_id, slot)
    return {p.attach: p for p in found}


REPO = programs("repo")
SERVICE = programs("service", slot=1)  # 127.0.24.195


def test_addresses_of_a_repository():
    assert _loopback_net.address(6336, 1) == "127.0.24.193"
    assert _loopback_net.address(6336, 2) == "127.0.24.194"
    assert _loopback_net.slice_cgroup("rediacc-6336-s1.slice", "/cg") == \
        "/cg/rediacc.slice/rediacc-6336.slice/rediacc-6336-s1.slice"
    assert _loopback_net.repository_slice(6336) == "rediacc-6336.slice"


@pytest.mark.parametrize(("ip", "after"), [
    ("0.0.0.0", "127.0.24.195"), ("127.0.0.1", "127.0.24.195"),
    ("127.0.24.195", "127.0.24.195"), ("10.1.2.3", "10.1.2.3")])
def test_service_bind4_moves_wildcard_and_localhost_to_the_service_ip(ip, after):
    assert run(SERVICE["bind4"], 4, ip) == (1, after)


def test_bind_with_port_zero_is_a_client_and_left_alone():
    assert run(SERVICE["bind4"], 4, "0.0.0.0", port=0) == (1, "0.0.0.0")
    assert run(REPO["bind4"], 4, "0.0.0.0", port=0) == (1, "0.0.0.0")


@pytest.mark.parametrize(("ip", "after"), [
    ("::", "::ffff:127.0.24.195"), ("::1", "::ffff:127.0.24.195"),
    ("::ffff:127.0.0.1", "::ffff:127.0.24.195"), ("2001:db8::1", "2001:db8::1")])
def test_service_bind6_moves_wildcard_and_localhost_to_the_mapped_service_ip(ip, after):
    assert run(SERVICE["bind6"], 6, ip) == (1, after)


def test_service_connect_to_localhost_reaches_the_service_itself():
    assert run(SERVICE["connect4"], 4, "127.0.0.1") == (1, "127.0.24.195")
    assert run(SERVICE["connect4"], 4, "0.0.0.0") == (1, "127.0.24.195")
    assert run(SERVICE["connect6"], 6, "::1") == (1, "::ffff:127.0.24.195")
    assert run(SERVICE["sendmsg4"], 4, "127.0.0.1") == (1, "127.0.24.195")
    # sendmsg to 0.0.0.0 is not a localhost idiom: left as is
    assert run(SERVICE["sendmsg4"], 4, "0.0.0.0") == (1, "0.0.0.0")


@pytest.mark.parametrize("attach", ["connect4", "sendmsg4", "bind4"])
@pytest.mark.parametrize(("ip", "verdict"), [
    ("127.0.24.194", 1), ("127.0.24.255", 1), ("127.0.24.191", 0), ("127.0.24.128", 0), ("127.0.25.1", 0),
    ("127.0.11.2", 0), ("127.0.0.53", 0), ("127.0.0.54", 0), ("10.0.2.2", 1), ("192.0.2.1", 1)])
def test_repository_guard_refuses_loopback_outside_its_26(attach, ip, verdict):
    assert run(REPO[attach], 4, ip)[0] == verdict


@pytest.mark.parametrize("attach", ["connect6", "sendmsg6", "bind6"])
@pytest.mark.parametrize(("ip", "verdict"), [
    ("::ffff:127.0.24.194", 1), ("::ffff:127.0.11.2", 0), ("2001:db8::1", 1), ("::ffff:10.0.2.2", 1)])
def test_repository_guard_covers_v4_mapped_addresses(attach, ip, verdict):
    assert run(REPO[attach], 6, ip)[0] == verdict


@pytest.mark.parametrize(("attach", "port", "verdict"), [
    ("connect4", 53, 1), ("sendmsg4", 53, 1), ("connect4", 80, 0), ("sendmsg4", 5353, 0), ("bind4", 53, 0),
    ("connect4", 13568, 0)])  # 13568 = 53 byte-swapped: the port is compared in network order
def test_repository_reaches_the_host_stub_resolver_on_port_53_only(attach, port, verdict):
    assert run(REPO[attach], 4, "127.0.0.53", port=port)[0] == verdict


@pytest.mark.parametrize(("ip", "port", "verdict"), [("::ffff:127.0.0.53", 53, 1), ("::ffff:127.0.0.53", 80, 0)])
def test_repository_reaches_the_stub_resolver_over_v4_mapped_addresses(ip, port, verdict):
    assert run(REPO["sendmsg6"], 6, ip, port=port)[0] == verdict


def test_repository_rewrites_localhost_to_its_own_address_then_allows_it():
    assert run(REPO["connect4"], 4, "127.0.0.1") == (1, "127.0.24.193")
    assert run(REPO["bind4"], 4, "0.0.0.0") == (1, "127.0.24.193")
    assert run(REPO["connect6"], 6, "::1") == (1, "::ffff:127.0.24.193")


def test_chain_service_then_repository_as_the_kernel_runs_them():
    """A child cgroup's programs run before its parent's: the guard sees the service IP."""
    _verdict, after = run(SERVICE["bind4"], 4, "0.0.0.0")
    assert run(REPO["bind4"], 4, after) == (1, "127.0.24.195")
    _verdict, after = run(SERVICE["connect4"], 4, "127.0.0.1")
    assert run(REPO["connect4"], 4, after) == (1, "127.0.24.195")


# A fork (networkId 6400, 127.0.25.0/26) that restored processes of its parent (6336, 127.0.24.192/26).
FORK = {p.attach: p for p in _loopback_net.repository_programs(6400, aliases=[6336])}


@pytest.mark.parametrize("attach", ["bind4", "connect4", "sendmsg4"])
def test_a_fork_s_alias_turns_the_parent_s_address_into_its_own(attach):
    assert run(FORK[attach], 4, "127.0.24.195") == (1, "127.0.25.3")
    assert run(FORK[attach], 4, "127.0.24.255") == (1, "127.0.25.63")
    assert run(FORK[attach], 4, "127.0.25.3") == (1, "127.0.25.3")


@pytest.mark.parametrize("attach", ["bind6", "connect6", "sendmsg6"])
def test_a_fork_s_alias_covers_v4_mapped_addresses(attach):
    assert run(FORK[attach], 6, "::ffff:127.0.24.195") == (1, "::ffff:127.0.25.3")


@pytest.mark.parametrize("attach", ["bind4", "connect4"])
def test_an_alias_never_opens_a_third_repository(attach):
    # Neither the parent's neighbour nor the addresses just outside the parent's /26.
    for ip in ("127.0.24.191", "127.0.25.64", "127.0.26.3"):
        assert run(FORK[attach], 4, ip) == (0, ip)
    assert _loopback_net.repository_programs(6400, aliases=[6400])[0].bytecode == \
        _loopback_net.repository_programs(6400)[0].bytecode


def test_without_an_alias_the_parent_s_address_is_refused():
    plain = {p.attach: p for p in _loopback_net.repository_programs(6400)}
    assert run(plain["bind4"], 4, "127.0.24.195") == (0, "127.0.24.195")


def test_program_names_fit_the_kernel_limit_for_the_largest_ids():
    for program in _loopback_net.service_programs(32704, 60) + _loopback_net.repository_programs(32704):
        assert len(program.name) < _bpf.PROG_NAME_LEN
        assert program.name.startswith(_loopback_net.NAME_PREFIX)
    with pytest.raises(ValueError):
        _bpf.Program("x" * 16, "bind4", [(_bpf.EXIT, 0, 0, 0, 0)])


def test_programs_differ_per_repository_and_service():
    codes = {p.bytecode for p in _loopback_net.repository_programs(6336) + _loopback_net.repository_programs(6400)}
    assert len(codes) == 12
    assert programs("service", slot=0)["bind4"].bytecode != programs("service", slot=1)["bind4"].bytecode


def test_bpf_load_packs_the_documented_attr_layout():
    seen = {}

    class Kernel:
        def bpf(self, cmd, attr):
            seen["cmd"], seen["attr"] = cmd, bytes(attr)
            return 7, bytes(attr)
    kernel = Kernel()
    program = SERVICE["bind4"]
    assert _bpf.Bpf(kernel).load(program) == 7
    attr = seen["attr"]
    assert seen["cmd"] == _bpf.PROG_LOAD
    prog_type, count = struct.unpack_from("<II", attr, 0)
    assert (prog_type, count) == (_bpf.PROG_TYPE_CGROUP_SOCK_ADDR, len(program.bytecode) // 8)
    assert attr[48:64].rstrip(b"\0").decode() == program.name
    assert struct.unpack_from("<I", attr, 68)[0] == _bpf.ATTACH_TYPES["bind4"]


def test_bpf_errors_name_what_failed():
    class Refusing:
        def bpf(self, cmd, attr):
            return -1, bytes(attr)   # -EPERM
    with pytest.raises(_bpf.BpfError, match="attaching a bind4 program failed: Operation not permitted"):
        _bpf.Bpf(Refusing()).attach(3, 4, "bind4")


# A fork (networkId 6400, 127.0.25.0/26) allowed to reach one staging host and one network.
LIMITED = {p.attach: p for p in _loopback_net.repository_programs(6400, egress=["192.0.2.10/32", "10.20.0.0/16"])}
CLOSED = {p.attach: p for p in _loopback_net.repository_programs(6400, egress=[])}


@pytest.mark.parametrize("attach", ["connect4", "sendmsg4"])
@pytest.mark.parametrize(("ip", "verdict"), [
    ("192.0.2.10", 1), ("192.0.2.11", 0), ("10.20.255.1", 1), ("10.21.0.1", 0), ("10.0.2.2", 0), ("8.8.8.8", 0),
    ("127.0.25.3", 1), ("127.0.24.195", 0)])
def test_a_fork_reaches_only_its_allowlist_beyond_loopback(attach, ip, verdict):
    assert run(LIMITED[attach], 4, ip)[0] == verdict


@pytest.mark.parametrize("attach", ["connect6", "sendmsg6"])
@pytest.mark.parametrize(("ip", "verdict"), [
    ("::ffff:192.0.2.10", 1), ("::ffff:10.0.2.2", 0), ("2001:db8::1", 0), ("::2", 0), ("::1", 1),
    ("::ffff:127.0.25.3", 1)])
def test_a_fork_s_allowlist_covers_v4_mapped_and_refuses_real_ipv6(attach, ip, verdict):
    assert run(LIMITED[attach], 6, ip)[0] == verdict


@pytest.mark.parametrize("attach", ["connect4", "sendmsg4"])
def test_a_new_fork_reaches_nothing_beyond_loopback_but_the_resolver(attach):
    assert run(CLOSED[attach], 4, "10.0.2.2")[0] == 0
    assert run(CLOSED[attach], 4, "127.0.0.53", port=53)[0] == 1
    assert run(CLOSED[attach], 4, "127.0.25.9")[0] == 1


def test_binds_are_not_egress():
    assert run(CLOSED["bind4"], 4, "10.0.2.15", port=80)[0] == 1
    assert run(CLOSED["bind6"], 6, "2001:db8::1", port=80)[0] == 1


def test_grand_repositories_have_no_egress_limit():
    assert _loopback_net.egress_of({"is_fork": False, "egress_allow": ["10.0.0.0/8"]}) is None
    assert _loopback_net.egress_of({"is_fork": True}) == []
    assert run(REPO["connect4"], 4, "8.8.8.8")[0] == 1


@pytest.mark.parametrize(("entry", "why"), [
    ("127.0.0.0/8", "is loopback"), ("127.0.24.192/26", "is loopback"), ("127.0.11.3", "is loopback"),
    ("2001:db8::/32", "IPv6"), ("10.0.0.300", "not an IPv4 address"), ("staging.lan", "not an IPv4 address"),
    ("", "not an IPv4 address")])
def test_egress_entries_that_are_refused(entry, why):
    with pytest.raises(Exception, match=why):
        _loopback_net.check_egress([entry])


def test_an_allowlist_of_everything_still_keeps_other_repositories_out():
    wide = {p.attach: p for p in _loopback_net.repository_programs(6400, egress=["0.0.0.0/0"])}
    assert run(wide["connect4"], 4, "8.8.8.8")[0] == 1
    assert run(wide["connect4"], 4, "127.0.24.195")[0] == 0
    assert run(wide["connect6"], 6, "::ffff:127.0.24.195")[0] == 0


def test_egress_entries_are_normalised():
    assert _loopback_net.check_egress(["10.20.3.4/16", "192.0.2.10", "10.20.0.0/16"]) == \
        ["10.20.0.0/16", "192.0.2.10/32"]
