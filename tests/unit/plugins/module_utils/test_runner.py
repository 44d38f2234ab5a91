# SPDX-License-Identifier: GPL-3.0-or-later
import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner


class RecordingModule:
    def __init__(self, rc=0, out="", err=""):
        self.result = (rc, out, err)
        self.calls = []

    def run_command(self, args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def test_module_runner_uses_c_locale_and_passes_stdin_out_of_band():
    module = RecordingModule(out="ok")
    result = Runner(module).run(["cryptsetup", "open", "/dev/loop0", "x"], stdin=b"secret-key")
    args, kwargs = module.calls[0]
    assert args == ["cryptsetup", "open", "/dev/loop0", "x"]
    assert kwargs["data"] == b"secret-key" and kwargs["binary_data"] is True
    assert kwargs["environ_update"]["LC_ALL"] == "C"
    assert result.stdout == "ok"


def test_failure_becomes_one_typed_error_with_argv_and_stderr():
    module = RecordingModule(rc=32, err="mount: /mnt/x: wrong fs type.\n")
    with pytest.raises(LockboxError) as err:
        Runner(module).run(["mount", "/dev/loop0", "/mnt/x"], stdin=b"never-shown")
    assert err.value.msg == "mount failed (rc=32): mount: /mnt/x: wrong fs type."
    assert err.value.as_result() == {
        "msg": "mount failed (rc=32): mount: /mnt/x: wrong fs type.", "cmd": ["mount", "/dev/loop0", "/mnt/x"],
        "rc": 32, "stdout": "", "stderr": "mount: /mnt/x: wrong fs type.\n"}
    assert "never-shown" not in repr(err.value.as_result())


def test_subprocess_runner_runs_real_commands_in_c_locale():
    result = Runner().run(["sh", "-c", 'echo "$LC_ALL"; cat'], stdin="from-stdin")
    assert result.stdout == "C\nfrom-stdin"


def test_accepted_nonzero_rc():
    assert Runner().run(["sh", "-c", "exit 2"], ok_rcs=(0, 2)).rc == 2


def test_the_fake_runner_refuses_a_command_nobody_recorded():
    from ...conftest import FakeRunner
    runner = FakeRunner()
    runner.answer(["findmnt"], "{}")
    assert runner.run(["findmnt", "-J"]).stdout == "{}"
    with pytest.raises(AssertionError, match=r"no recorded answer for \['mkfs\.btrfs', '/dev/vdb'\]"):
        runner.run(["mkfs.btrfs", "/dev/vdb"])


def test_api_requests_travel_over_the_unix_socket(tmp_path):
    import http.server
    import socketserver
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = (200, b'{"Version": "26.1.5"}') if self.path == "/version" else \
                (404, b'{"message": "No such container: nope"}')
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        def get_request(self):
            request = super().get_request()[0]
            return request, ("local", 0)

    path = str(tmp_path / "d.sock")
    server = Server(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runner = Runner()
        assert runner.api(path, "GET", "/version").data == {"Version": "26.1.5"}
        with pytest.raises(LockboxError) as err:
            runner.api(path, "GET", "/containers/nope/json")
        assert err.value.msg == "GET /containers/nope/json on %s failed (HTTP 404): No such container: nope" % path
        assert list(runner.calls) == [["api", path, "GET", "/version"], ["api", path, "GET", "/containers/nope/json"]]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(LockboxError, match="nothing answers on"):
        Runner().api(str(tmp_path / "gone.sock"), "GET", "/version")
