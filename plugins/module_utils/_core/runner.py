# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs external tools in the C locale and turns failures into LockboxError.

Modules pass AnsibleModule.run_command; the host runtime uses subprocess. Secrets are
only ever handed over as ``stdin``, so the argv recorded in errors and logs is safe.
A daemon that has an HTTP API on a unix socket (dockerd) is asked through ``api``: one
request costs milliseconds where its CLI costs a process start (about 0.4 s under TCG).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import socket
import subprocess
import tempfile

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


class CommandResult:
    __slots__ = ("argv", "rc", "stderr", "stdout")

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


class ApiResult:
    __slots__ = ("data", "request", "status")

    def __init__(self, request, status, data):
        self.request = request
        self.status = status
        self.data = data


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Runner:
    """Executes argv lists. ``calls`` records the latest argv (bounded: the watchdog runs for months)."""

    def __init__(self, module=None):
        self._module = module
        self.calls = collections.deque(maxlen=1000)

    def run(self, argv, stdin=None, ok_rcs=(0,), env=None, cwd=None):
        """``env`` adds to (never replaces) the environment; the C locale always wins."""
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        update = dict(env or {}, **C_LOCALE)
        if self._module is not None:
            rc, out, err = self._module.run_command(
                argv, data=stdin, binary_data=True, environ_update=update, cwd=cwd)
        else:
            import os
            data = stdin.encode() if isinstance(stdin, str) else stdin
            proc = subprocess.run(argv, input=data, capture_output=True, env=dict(os.environ, **update), cwd=cwd,
                                  check=False)
            rc = proc.returncode
            out = proc.stdout.decode(errors="replace")
            err = proc.stderr.decode(errors="replace")
        if rc not in ok_rcs:
            tool = argv[0].rsplit("/", 1)[-1]
            detail = (err or out or "").strip().splitlines()
            raise LockboxError(
                "%s failed (rc=%s): %s" % (tool, rc, detail[-1] if detail else "no output"),
                cmd=argv, rc=rc, stdout=out, stderr=err)
        return CommandResult(argv, rc, out, err)

    def pipe(self, consumer, *, producer=None, source=None, meter=None, chunk=1 << 20):
        """Stream bytes into ``consumer`` (argv) from ``producer`` (argv, its stdout) or ``source`` (a
        binary file object); each chunk passes ``meter(chunk)`` first (counting, hashing, pacing; it
        may raise to stop). The consumer's CommandResult; a failure of either side raises a
        LockboxError naming that side, and neither is left running."""
        consumer = [str(a) for a in consumer]
        self.calls.append(consumer if producer is None else [str(a) for a in producer] + ["|"] + consumer)
        env = dict(os.environ, **C_LOCALE)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                tempfile.TemporaryFile() as producer_err:
            sink = subprocess.Popen(consumer, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)
            feeder = None
            try:
                if producer is not None:
                    feeder = subprocess.Popen([str(a) for a in producer], stdout=subprocess.PIPE,
                                              stderr=producer_err, env=env)
                    source = feeder.stdout
                broken = _pump(source, sink.stdin, meter, chunk)
            except BaseException:
                for proc in (feeder, sink):
                    if proc is not None:
                        proc.kill()
                        proc.wait()
                raise
            rc = sink.wait()
            failed = []
            if feeder is not None:
                if broken:
                    feeder.kill()  # the consumer's failure is the cause
                if feeder.wait() != 0 and not broken:
                    failed.append((producer, feeder.returncode, producer_err))
            if rc != 0:
                failed.append((consumer, rc, err))
            output = _read_back(out)
            if failed:
                argv, code, stream = failed[0]
                detail = _read_back(stream).strip().splitlines()
                raise LockboxError("%s failed (rc=%s): %s" % (str(argv[0]).rsplit("/", 1)[-1], code,
                                                              detail[-1] if detail else "no output"),
                                   cmd=[str(a) for a in argv], rc=code, stdout=output, stderr="\n".join(detail))
            return CommandResult(consumer, rc, output, _read_back(err))

    def api(self, socket_path, method, path, ok_statuses=(200,), timeout=60.0, body=None):  # noqa: PLR0917
        """One HTTP request on ``socket_path`` (``body`` sent as JSON); the answer's JSON (None when empty)."""
        request = ["api", socket_path, method, path]
        self.calls.append(request)
        connection = _UnixHTTPConnection(socket_path, timeout)
        headers = {"Host": "localhost"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise LockboxError("%s %s: nothing answers on %s (%s)" % (method, path, socket_path, exc),
                               cmd=request) from None
        finally:
            connection.close()
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            data = body.decode(errors="replace")
        if status not in ok_statuses:
            detail = data.get("message") if isinstance(data, dict) else data
            raise LockboxError("%s %s on %s failed (HTTP %d): %s" % (method, path, socket_path, status, detail),
                               cmd=request, rc=status)
        return ApiResult(request, status, data)

    def api_stream(self, socket_path, path):
        """GET ``path`` as a stream of JSON lines (dockerd's /events); ends when the daemon closes it."""
        request = ["api-stream", socket_path, "GET", path]
        self.calls.append(request)
        connection = _UnixHTTPConnection(socket_path, None)
        try:
            connection.request("GET", path, headers={"Host": "localhost"})
            response = connection.getresponse()
            if response.status != 200:
                raise LockboxError("GET %s on %s failed (HTTP %d)" % (path, socket_path, response.status),
                                   cmd=request, rc=response.status)
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise LockboxError("GET %s: the stream on %s broke (%s)" % (path, socket_path, exc), cmd=request) from None
        finally:
            connection.close()


def _pump(source, sink, meter, chunk):
    """Copy ``source`` into ``sink`` until its end; True when the sink closed first (its side failed)."""
    read = source.read1 if hasattr(source, "read1") else source.read
    try:
        while True:
            data = read(chunk)
            if not data:
                break
            if meter is not None:
                meter(data)
            sink.write(data)
    except BrokenPipeError:
        return True
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass
    return False


def _read_back(handle):
    handle.seek(0)
    return handle.read().decode(errors="replace")
