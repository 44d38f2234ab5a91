# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel's bpf(2) interface, for cgroup socket-address programs only.

No clang, libbpf or bpftool is needed on hosts: the few programs lockbox attaches are
assembled here (see ``_loopback``) and loaded, attached, queried and detached with the
raw syscall through ctypes. Everything below is the stable uapi of ``linux/bpf.h``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

# bpf(2) commands
PROG_LOAD = 5
PROG_ATTACH = 8
PROG_DETACH = 9
PROG_GET_FD_BY_ID = 13
OBJ_GET_INFO_BY_FD = 15
PROG_QUERY = 16

PROG_TYPE_CGROUP_SOCK_ADDR = 18
F_ALLOW_MULTI = 1 << 1

# attach types of BPF_PROG_TYPE_CGROUP_SOCK_ADDR
ATTACH_TYPES = {
    "bind4": 8, "bind6": 9, "connect4": 10, "connect6": 11, "sendmsg4": 14, "sendmsg6": 15,
}

# struct bpf_sock_addr: offsets of the fields the programs read or write
CTX_USER_FAMILY = 0
CTX_USER_IP4 = 4
CTX_USER_IP6 = 8  # four u32 words: 8, 12, 16, 20
CTX_USER_PORT = 24

# opcodes (class | op | source)
LDX_W = 0x61        # dst = *(u32 *)(src + off)
STX_W = 0x63        # *(u32 *)(dst + off) = src
MOV64_K = 0xb7      # dst = imm (64-bit)
MOV32_K = 0xb4      # wdst = imm (zero-extended)
MOV32_X = 0xbc      # wdst = wsrc
AND32_K = 0x54      # wdst &= imm
OR32_K = 0x44       # wdst |= imm
JEQ32_K = 0x16      # if wdst == imm goto +off
JNE32_K = 0x56      # if wdst != imm goto +off
JA = 0x05           # goto +off
EXIT = 0x95

PROG_NAME_LEN = 16
_SYSCALL_NUMBERS = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351,
                    "riscv64": 280}


def insn(code, dst=0, src=0, off=0, imm=0):
    """One 8-byte instruction; ``imm`` may be given unsigned (it is a raw 32-bit field)."""
    if imm > 0x7FFFFFFF:
        imm -= 1 << 32
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def u32_of(raw4):
    """The value a 32-bit load of these 4 bytes (network order in the context) yields."""
    return struct.unpack("<I", raw4)[0]


class Program:
    """Assembled instructions with labels resolved; ``bytecode`` is what the kernel loads."""

    def __init__(self, name, attach, instructions):
        if len(name) >= PROG_NAME_LEN:
            raise ValueError("bpf program names are shorter than %d characters" % PROG_NAME_LEN)
        self.name = name
        self.attach = attach
        self.bytecode = _assemble(instructions)

    def __repr__(self):
        return "Program(%s, %s, %d insns)" % (self.name, self.attach, len(self.bytecode) // 8)


def _assemble(items):
    """Items are ("label", name) markers or (code, dst, src, target, imm) with target a label or int."""
    positions, count = {}, 0
    for item in items:
        if item[0] == "label":
            positions[item[1]] = count
        else:
            count += 1
    out, index = [], 0
    for item in items:
        if item[0] == "label":
            continue
        code, dst, src, target, imm = item
        off = positions[target] - index - 1 if isinstance(target, str) else target
        out.append(insn(code, dst, src, off, imm))
        index += 1
    return b"".join(out)


class _Kernel:
    """bpf(2) through libc's syscall(); separated so unit tests can record calls instead."""

    def __init__(self):
        machine = platform.machine()
        if machine not in _SYSCALL_NUMBERS:
            raise LockboxError("bpf: unsupported architecture %s" % machine)
        self.number = _SYSCALL_NUMBERS[machine]
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long

    def bpf(self, cmd, attr):
        buffer = ctypes.create_string_buffer(bytes(attr), len(attr))
        result = self.libc.syscall(self.number, cmd, buffer, len(attr))
        if result < 0:
            code = ctypes.get_errno()
            return -code, buffer.raw
        return result, buffer.raw


class BpfError(LockboxError):
    def __init__(self, what, code, log=""):
        detail = os.strerror(code)
        if code == errno.EPERM:
            detail += " (needs root with CAP_BPF/CAP_SYS_ADMIN)"
        super().__init__("bpf: %s failed: %s%s" % (what, detail, ("\n" + log) if log else ""))
        self.errno = code


class Bpf:
    """The four things lockbox does with cgroup programs: load, attach, list, detach."""

    def __init__(self, kernel=None):
        self.kernel = kernel or _Kernel()

    def _call(self, what, cmd, attr):
        result, raw = self.kernel.bpf(cmd, attr)
        if result < 0:
            raise BpfError(what, -result)
        return result, raw

    def load(self, program):
        """Load ``program``; returns its fd (the caller closes it)."""
        insns = ctypes.create_string_buffer(program.bytecode, len(program.bytecode))
        license_ = ctypes.create_string_buffer(b"GPL")
        log = ctypes.create_string_buffer(65536)
        attr = bytearray(128)
        struct.pack_into("<IIQQIIQII", attr, 0, PROG_TYPE_CGROUP_SOCK_ADDR, len(program.bytecode) // 8,
                         ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log),
                         ctypes.addressof(log), 0, 0)
        struct.pack_into("16s", attr, 48, program.name.encode())
        struct.pack_into("<I", attr, 68, ATTACH_TYPES[program.attach])
        result, _raw = self.kernel.bpf(PROG_LOAD, attr)
        if result < 0:
            raise BpfError("loading %s" % program.name, -result, log.value.decode(errors="replace").strip())
        return result

    def attach(self, cgroup_fd, prog_fd, attach):
        attr = struct.pack("<IIII", cgroup_fd, prog_fd, ATTACH_TYPES[attach], F_ALLOW_MULTI).ljust(32, b"\0")
        self._call("attaching a %s program" % attach, PROG_ATTACH, attr)

    def detach(self, cgroup_fd, prog_fd, attach):
        attr = struct.pack("<IIII", cgroup_fd, prog_fd, ATTACH_TYPES[attach], 0).ljust(32, b"\0")
        self._call("detaching a %s program" % attach, PROG_DETACH, attr)

    def attached_ids(self, cgroup_fd, attach, capacity=64):
        """IDs of the programs attached to this cgroup itself (not inherited) for ``attach``."""
        ids = (ctypes.c_uint32 * capacity)()
        attr = bytearray(40)
        struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, ATTACH_TYPES[attach], 0, 0, ctypes.addressof(ids),
                         capacity)
        _result, raw = self._call("listing %s programs" % attach, PROG_QUERY, attr)
        count = struct.unpack_from("<I", raw, 24)[0]
        return list(ids)[:count]

    def fd_by_id(self, prog_id):
        result, _raw = self._call("opening program %d" % prog_id, PROG_GET_FD_BY_ID,
                                  struct.pack("<III", prog_id, 0, 0).ljust(16, b"\0"))
        return result

    def info(self, prog_fd):
        """(name, tag hex) of a loaded program; the tag is a hash of its instructions."""
        info = ctypes.create_string_buffer(80)
        attr = struct.pack("<IIQ", prog_fd, 80, ctypes.addressof(info))
        self._call("reading program info", OBJ_GET_INFO_BY_FD, attr)
        raw = info.raw
        return raw[64:80].split(b"\0", 1)[0].decode(), raw[8:16].hex()

    def attached(self, cgroup_fd, attach):
        """[(fd, name, tag)] of the programs on this cgroup; the caller closes the fds."""
        out = []
        for prog_id in self.attached_ids(cgroup_fd, attach):
            try:
                fd = self.fd_by_id(prog_id)
            except BpfError as exc:
                if exc.errno == errno.ENOENT:  # detached meanwhile
                    continue
                raise
            name, tag = self.info(fd)
            out.append((fd, name, tag))
        return out
