# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Landlock (landlock(7)) and the no-new-privileges bit, through the raw syscalls.

Hosts have no compiler and no Landlock library: the three syscalls are called through
ctypes, like ``_tools/bpf``. Everything here is the stable uapi of ``linux/landlock.h``;
a kernel without Landlock makes ``restrict_self`` fail, never silently skip (fail closed).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

# The Landlock syscalls share one number on every architecture.
CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, with the ABI version that introduced each.
FS_RIGHTS = {
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1), "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1), "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1), "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3), "ioctl_dev": (1 << 15, 5),
}
# Rights that make sense on a file (a rule for a file with a directory right is EINVAL).
FILE_RIGHTS = frozenset(("execute", "write_file", "read_file", "truncate", "ioctl_dev"))
# Scopes (ABI 6): no connecting to abstract UNIX sockets, no signals, outside the sandbox.
SCOPES = {"abstract_unix_socket": (1 << 0, 6), "signal": (1 << 1, 6)}


class LandlockError(LockboxError):
    pass


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _syscall(number, *args):
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def abi_version():
    """The kernel's Landlock ABI version; 0 when Landlock is not built in or not enabled at boot."""
    try:
        return _syscall(CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def mask(names, abi):
    """The bits of the rights (or scopes) ``names`` that ABI version ``abi`` knows."""
    table = {**FS_RIGHTS, **SCOPES}
    return sum(table[name][0] for name in names if table[name][1] <= abi)


def no_new_privs():
    """prctl(PR_SET_NO_NEW_PRIVS): execve never grants privileges again (setuid bits, file caps)."""
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise LandlockError("prctl(PR_SET_NO_NEW_PRIVS) failed: %s" % os.strerror(code))


def restrict_self(rules, abi):
    """Confine this process (and what it runs) to ``rules``: [(path, [right names])].

    Every filesystem right this ABI knows is handled, so anything not granted below a rule's
    path is denied (EACCES); with ABI 6 abstract UNIX sockets and signals are scoped too.
    """
    if abi < 1:
        raise LandlockError("this kernel has no Landlock (landlock(7)): the sandbox cannot be built, so it is refused")
    handled = mask(FS_RIGHTS, abi)
    attr = struct.pack("=QQQ", handled, 0, mask(SCOPES, abi))
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    buffer = ctypes.create_string_buffer(attr[:size], size)
    ruleset = _syscall(CREATE_RULESET, buffer, ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for path, names in rules:
            _add_path_rule(ruleset, path, names, abi)
        no_new_privs()
        _syscall(RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    except OSError as exc:
        raise LandlockError("Landlock could not confine the session: %s" % exc) from exc
    finally:
        os.close(ruleset)


def _add_path_rule(ruleset, path, names, abi):
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            names = [n for n in names if n in FILE_RIGHTS]
        allowed = mask(names, abi)
        if not allowed:
            return
        attr = ctypes.create_string_buffer(struct.pack("=Qi", allowed, fd), 12)
        _syscall(ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH), attr, ctypes.c_uint32(0))
    finally:
        os.close(fd)
