# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sandbox gateway: one session in one repository, as the unprivileged ``rediacc`` user.

``renet sandbox --repo NAME`` (the forced command of the repository's SSH key) runs as root
and, in this order: refuses unless the repository is mounted and its daemon answers; takes a
mount namespace of its own with a tmpfs for the session (home, TMPDIR, Docker socket); forks
the session, which enters the repository's cgroup (its network guard), sets no-new-privileges,
confines itself with Landlock, drops to uid 7111 with no supplementary group and execs the
command with a clean environment. The gateway stays root only to pass the session's Docker
requests, judged one by one (``_rules/sandbox``), to the repository's daemon, and writes one
audit record when the session ends. Any step that fails stops the session before the command
runs (fail closed).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

from ansible_collections.lockbox.fleet.plugins.module_utils._core import audit as _audit
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import sandbox as _rules
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import landlock as _landlock
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import mount as _mount

MAX_HEAD = 64 << 10
JUDGED = frozenset(("container", "update", "exec", "volume", "empty"))
FRAMING = frozenset(("content-length", "transfer-encoding"))
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer"))


class SandboxError(LockboxError):
    pass


# -- the Docker API gate ---------------------------------------------------------------------------

def _read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed the connection")
        data += chunk
        if len(data) > MAX_HEAD:
            raise _rules.Refused("the request head is larger than %d bytes" % MAX_HEAD)
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def parse_head(head):
    """(method, target, [(name, value)]) of an HTTP/1.1 request head; raises Refused when it is not one."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError as exc:
        raise _rules.Refused("not an HTTP/1.1 request") from exc
    if version not in ("HTTP/1.1", "HTTP/1.0") or not target.startswith("/"):
        raise _rules.Refused("not an HTTP/1.1 request for a path")
    return method, target, _fields(lines[1:])


def _fields(lines):
    """[(name, value)] of the header lines of a request or an answer."""
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _rules.Refused("a malformed request header")
        headers.append((name, value.strip()))
    return headers


def _header(headers, name):
    values = [v for n, v in headers if n.lower() == name]
    if len(values) > 1:
        raise _rules.Refused("the request has %d %s headers" % (len(values), name))
    return values[0] if values else None


def framing(headers):
    """(Content-Length as written, its value, chunked): one of the two at most, never ambiguous."""
    length_text, encoding = _header(headers, "content-length"), _header(headers, "transfer-encoding")
    if length_text is not None and encoding is not None:
        raise _rules.Refused("a request with both Content-Length and Transfer-Encoding")
    if encoding is not None and encoding.lower() != "chunked":
        raise _rules.Refused("transfer encoding %s" % encoding)
    if length_text is not None and not length_text.isdigit():
        raise _rules.Refused("a malformed Content-Length")
    return length_text, int(length_text or 0), encoding is not None


class Reader:
    """Bytes of one client connection, with what was read past the head kept first."""

    def __init__(self, conn, rest):
        self.conn, self.buffer = conn, rest

    def exactly(self, size):
        while len(self.buffer) < size:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionError("the client closed the connection inside a request body")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self):
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise _rules.Refused("a chunk header is too long")
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionError("the client closed the connection inside a chunked body")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def chunks(self):
        """(raw bytes, payload) of each chunk of a chunked body, up to and including its last chunk and trailer."""
        while True:
            line = self.line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _rules.Refused("a malformed chunk size") from exc
            if size == 0:
                trailer = b""
                while True:
                    field = self.line()
                    trailer += field + b"\r\n"
                    if not field:
                        yield line + b"\r\n" + trailer, b""
                        return
            data = self.exactly(size + 2)
            if data[-2:] != b"\r\n":
                raise _rules.Refused("a chunk without its final CRLF")
            yield line + b"\r\n" + data, data[:-2]


def _body(reader, length, chunked, limit):
    if chunked:
        data = b""
        for _raw, payload in reader.chunks():
            data += payload
            if len(data) > limit:
                raise _rules.Refused("a request body larger than %d bytes is not judged" % limit)
        return data
    if length > limit:
        raise _rules.Refused("a request body larger than %d bytes is not judged" % limit)
    return reader.exactly(length)


def _refusal(message):
    body = json.dumps({"message": "lockbox sandbox: %s" % message}).encode()
    return (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def _pump(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _switched(upstream, conn):
    """Pass the daemon's answer to an attach or exec start; True when it switched to a stream (101).

    Any other answer is passed whole (by its Content-Length) and the connection ends: the daemon
    keeps it open for another request, which must never come from the raw stream.
    """
    head, rest = _read_head(upstream)
    lines = head.decode("latin-1").split("\r\n")
    conn.sendall(head + b"\r\n\r\n")
    if lines[0].split(" ")[1:2] == ["101"]:
        if rest:
            conn.sendall(rest)
        return True
    length = framing(_fields(lines[1:]))[1]
    conn.sendall(Reader(upstream, rest).exactly(length) if length else b"")
    return False


class DockerGate:
    """Passes one session's Docker API requests to its repository's daemon, each judged first."""

    def __init__(self, upstream, paths, on_refused):
        self.upstream, self.paths, self.on_refused = upstream, paths, on_refused
        self.refused = []

    def serve(self, listener):
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        return thread

    def _accept(self, listener):
        while True:
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def forward(self, conn):
        """Judge one request; (the upstream socket with the request sent, whether it may become a stream,
        the client's bytes past the request)."""
        head, rest = _read_head(conn)
        method, target, headers = parse_head(head)
        how = _rules.route(method, target)
        _rules.check_query(how, parse_qs(urlsplit(target).query, keep_blank_values=True))
        length_text, length, chunked = framing(headers)
        # Only attach and exec start may become a stream: on any other endpoint the daemon would
        # read what follows as further requests, unjudged.
        upgrade = "upgrade" in (_header(headers, "connection") or "").lower() and _rules.hijacks(method, target)
        reader = Reader(conn, rest)
        body = None
        if how in JUDGED:
            body = _rules.judge_body(how, _body(reader, length, chunked, _rules.MAX_JUDGED_BODY), self.paths)
        kept = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP | FRAMING | {"upgrade"}
                or (upgrade and n.lower() in ("connection", "upgrade"))]
        if not upgrade:
            kept.append(("Connection", "close"))  # one request per connection: the next one is judged anew
        if body is not None:
            kept.append(("Content-Length", str(len(body))))
        elif chunked:
            kept.append(("Transfer-Encoding", "chunked"))
        elif length_text is not None:
            kept.append(("Content-Length", str(length)))
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.upstream)
        upstream.sendall(("%s %s HTTP/1.1\r\n" % (method, target)).encode("latin-1")
                         + b"".join(("%s: %s\r\n" % pair).encode("latin-1") for pair in kept) + b"\r\n")
        if body is not None:
            upstream.sendall(body)
        elif chunked:
            for raw, _payload in reader.chunks():
                upstream.sendall(raw)
        elif length:
            upstream.sendall(reader.exactly(length))
        # What the client sent past the request goes on only once the daemon switched to a stream.
        return upstream, upgrade, reader.buffer if upgrade else b""

    def handle(self, conn):
        upstream = None
        try:
            upstream, upgrade, early = self.forward(conn)
            if upgrade and not _switched(upstream, conn):
                return  # the daemon answered without the stream: nothing more goes its way
            if upgrade:
                if early:
                    upstream.sendall(early)
                threading.Thread(target=_pump, args=(conn, upstream), daemon=True).start()
            _pump(upstream, conn)
        except _rules.Refused as refused:
            self.refused.append(str(refused))
            self.on_refused(str(refused))
            try:
                conn.sendall(_refusal(str(refused)))
            except OSError:
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            for sock in (upstream, conn):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass


# -- the session ----------------------------------------------------------------------------------

def sandbox_user():
    try:
        entry = pwd.getpwnam(_rules.USER)
    except KeyError:
        entry = None
    if entry is None or entry.pw_uid != _rules.UID:
        raise SandboxError("the sandbox user %s (uid %d) does not exist on this host: apply the "
                           "lockbox.fleet.machine role" % (_rules.USER, _rules.UID))
    return entry


def _repository(layout, name, guid=None):
    record = _state.ready_record(layout.state_dir, name)
    if guid is not None and record["guid"] != guid:
        raise SandboxError("this key was given to an earlier repository named %s (GUID %s); the repository of that "
                           "name now is another one: ask for a key of its own" % (name, guid))
    repo = _project.Repository.from_record(layout, record)
    if not os.path.ismount(repo.mount):
        raise SandboxError("repository %s is not mounted: bring it up first (lockbox.fleet.repo_app or renet up)"
                           % name)
    if not os.path.exists(_repo_daemon.socket_path(repo.network_id)):
        raise SandboxError("the Docker daemon of %s is not running (%s): bring the repository up first"
                           % (name, _repo_daemon.unit_name(repo.network_id)))
    return repo, record


def _private_session_dir(runner, session_dir):
    """A mount namespace of our own, with a fresh tmpfs for the session (gone when it ends)."""
    if not hasattr(os, "unshare"):
        raise SandboxError("the sandbox needs Python 3.12 or later on the host (os.unshare)")
    os.unshare(os.CLONE_NEWNS)
    _mount.make_private(runner, "/")
    os.makedirs(session_dir, mode=0o755, exist_ok=True)
    _mount.mount(runner, "tmpfs", session_dir, "mode=0755,size=64m,nosuid,nodev", fstype="tmpfs")
    for sub in ("home", "tmp"):
        os.mkdir(os.path.join(session_dir, sub), 0o700)
        os.chown(os.path.join(session_dir, sub), _rules.UID, _rules.UID)
    # Programs that write to /tmp by name find the session's own there (the host's stays out of reach).
    for shared in _rules.SHARED_TMP:
        if os.path.isdir(shared):
            _mount.mount(runner, os.path.join(session_dir, "tmp"), shared, "bind")


def listen(path, mode, owner=None):
    """A listening unix socket at ``path`` (a DockerGate's), with ``mode`` and, when given, ``owner`` (uid)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    if owner is not None:
        os.chown(path, owner, owner)
    os.chmod(path, mode)
    listener.listen(16)
    return listener


def _session_cgroup(network_id):
    """A leaf cgroup under the repository's slice: the session's connections meet its network guard."""
    parent = _loopback_net.slice_cgroup(_loopback_net.repository_slice(network_id))
    if not os.path.isdir(parent):
        raise SandboxError("the cgroup of repository networkId %d (%s) does not exist: bring it up first"
                           % (network_id, parent))
    path = os.path.join(parent, "lockbox-sandbox-%d" % os.getpid())
    os.mkdir(path)
    return path


def _end_cgroup(cgroup, say_error):
    """The session ends with its command: what it left running in the background is killed too."""
    try:
        with open(os.path.join(cgroup, "cgroup.kill"), "w") as handle:
            handle.write("1")
    except OSError as exc:
        say_error("renet sandbox: could not end the session's processes (%s): %s" % (cgroup, exc))
    for _attempt in range(50):
        try:
            os.rmdir(cgroup)
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    say_error("renet sandbox: the session's cgroup %s stays: %s" % (cgroup, last))


def _child(repo, cgroup, argv, env, abi, streams=None):  # noqa: PLR0917
    """In the forked session: enter the cgroup, confine, drop to the sandbox user, exec. Never returns."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if streams is not None:  # a task: no terminal, its output to the gateway's files
            null = os.open(os.devnull, os.O_RDONLY)
            for source, target in ((null, 0), (streams[0], 1), (streams[1], 2)):
                os.dup2(source, target)
        _landlock.restrict_self(_rules.landlock_rules(repo.mount), abi)  # sets no-new-privs first
        os.setgroups([])
        os.setgid(_rules.UID)
        os.setuid(_rules.UID)
        os.chdir(repo.mount)
        os.execvpe(argv[0], argv, env)  # noqa: S606 - the session's own command, confined
    except BaseException as exc:  # nothing may run unconfined: report and leave
        os.write(2, ("renet sandbox: the session could not start: %s\n" % exc).encode())
    finally:
        os._exit(126)


def command_for(args, environ):
    """What the session runs: the arguments given, else the SSH client's command, else a login shell."""
    if args:
        return list(args)
    if environ.get("SSH_ORIGINAL_COMMAND"):
        return ["/bin/bash", "-c", environ["SSH_ORIGINAL_COMMAND"]]
    return ["/bin/bash", "-l"]


_DENIED = re.compile(r'^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+-1\s+(EACCES|EPERM)\b')
_TARGET = re.compile(r'inet6?_(?:addr|pton)\((?:AF_INET6?, )?"([^"]+)"|"((?:[^"\\]|\\.)*)"')
_PORT = re.compile(r'htons\((\d+)\)')
MAX_DENIALS = 100
# Failures with these errnos that say nothing about the sandbox (epoll_ctl: a regular file is not pollable).
NOT_DENIALS = frozenset(("epoll_ctl",))


def kernel_denials(trace_text):
    """What the kernel refused the session (EACCES, EPERM), from strace's record of failed syscalls."""
    found = []
    for line in (trace_text or "").splitlines():
        match = _DENIED.match(line.strip())
        if not match:
            continue
        syscall, args, code = match.groups()
        if syscall in NOT_DENIALS:
            continue
        target = _TARGET.search(args)
        port = _PORT.search(args)
        entry = {"syscall": syscall, "errno": code,
                 "target": (target.group(1) or target.group(2)) if target else None}
        if port and target and target.group(1):
            address = target.group(1)
            entry["target"] = ("[%s]:%s" if ":" in address else "%s:%s") % (address, port.group(1))
        if entry not in found:
            found.append(entry)
        if len(found) >= MAX_DENIALS:
            break
    return found


def _traced(argv, trace_file):
    strace = shutil.which("strace")
    if strace is None:
        return argv, False
    return [strace, "-f", "-qq", "-o", trace_file, "-e", "status=failed", "--", *argv], True


def session(runner, layout, name, argv, *, environ, say_error, guid=None, streams=None):
    """Run ``argv`` in the sandbox of repository ``name``; {exit_code, refused, kernel_denials (tasks), duration_s}.

    ``streams``: (stdout fd, stderr fd) for a task (stdin is /dev/null, the kernel's refusals are
    recorded through strace when the host has it); None for a terminal session. The calling
    process takes a mount namespace of its own: a caller that goes on afterwards forks first.
    """
    if os.geteuid() != 0:
        raise SandboxError("renet sandbox must run as root (it is the forced command of a repository's SSH key)")
    repo, _record = _repository(layout, name, guid)
    sandbox_user()
    abi = _landlock.abi_version()
    if abi < 1:
        raise SandboxError("this kernel has no Landlock (landlock(7)): the sandbox cannot be built, so it is refused")
    started = time.monotonic()
    paths = _isolation.HostPaths(repo.mount, repo.mount, network_id=repo.network_id)
    gate = DockerGate(_repo_daemon.socket_path(repo.network_id), paths,
                      lambda why: _audit.record("sandbox-refused", repository=name, reason=why))
    _private_session_dir(runner, _rules.SESSION_DIR)
    listener = listen(os.path.join(_rules.SESSION_DIR, _rules.SOCKET_NAME), 0o600, owner=_rules.UID)
    cgroup = _session_cgroup(repo.network_id)
    env = _rules.environment(repo, term=environ.get("TERM"))
    trace_file = os.path.join(_rules.SESSION_DIR, "tmp", ".kernel-denials.strace")
    command, traced = _traced(argv, trace_file) if streams is not None else (argv, False)
    pid = os.fork()
    if pid == 0:
        listener.close()
        _child(repo, cgroup, command, env, abi, streams)
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # the terminal's keys are for the session
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    gate.serve(listener)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    code = 128 - code if code < 0 else code  # a signal, as a shell reports it
    listener.close()
    _end_cgroup(cgroup, say_error)
    outcome = {"exit_code": code, "refused": list(gate.refused), "duration_s": round(time.monotonic() - started, 3),
               "kernel_denials": None}
    if traced:
        try:
            with open(trace_file, errors="replace") as handle:
                outcome["kernel_denials"] = kernel_denials(handle.read())
        except OSError:
            outcome["kernel_denials"] = []
    _audit.record("sandbox-session", repository=name, network_id=repo.network_id, command=argv,
                  exit_code=code, duration_s=outcome["duration_s"], outcome="ok" if code == 0 else "failed",
                  refused=gate.refused, ssh_client=environ.get("SSH_CLIENT", "").split(" ")[0] or None)
    return outcome


def run(runner, layout, name, args, *, environ, say_error, guid=None):
    """``renet sandbox``: one terminal (or SSH command) session; its exit code."""
    return session(runner, layout, name, command_for(args, environ), environ=environ, say_error=say_error,
                   guid=guid)["exit_code"]
