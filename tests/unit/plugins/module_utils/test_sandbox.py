# SPDX-License-Identifier: GPL-3.0-or-later
"""The sandbox: what a session's Docker requests may ask (judged before the daemon sees them), and its files."""

import json
import os
import socket
import threading

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox as _sandbox
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import sandbox as _rules
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import landlock as _landlock


@pytest.fixture
def mount(tmp_path):
    root = tmp_path / "mnt" / "guid-a"
    (root / "data").mkdir(parents=True)
    (root / ".rediacc").mkdir()
    (tmp_path / "mnt" / "guid-b").mkdir()
    os.symlink(str(tmp_path / "mnt" / "guid-b"), str(root / "escape"))
    return str(root)


@pytest.fixture
def paths(mount):
    return _isolation.HostPaths(mount, mount, network_id=2816)


def create(host=None, **config):
    return json.dumps(dict(config, Image="app", HostConfig=host or {})).encode()


@pytest.mark.parametrize("method,path,how", [
    ("GET", "/v1.45/containers/json?all=1", "pass"),
    ("HEAD", "/_ping", "pass"),
    ("POST", "/v1.45/containers/create?name=web", "container"),
    ("POST", "/containers/web/start", "empty"),
    ("POST", "/v1.45/containers/3f2a/exec", "exec"),
    ("POST", "/v1.45/exec/77ab/start", "pass"),
    ("POST", "/v1.45/volumes/create", "volume"),
    ("POST", "/v1.45/build?t=x", "build"),
    ("DELETE", "/v1.45/containers/web?force=1", "pass"),
])
def test_the_endpoints_a_session_may_use(method, path, how):
    assert _rules.route(method, path) == how


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1.45/networks/create"), ("POST", "/networks/abc/connect"), ("POST", "/v1.45/plugins/pull"),
    ("POST", "/v1.45/containers/web/checkpoints"), ("POST", "/session"), ("POST", "/grpc"),
    ("POST", "/v1.45/swarm/init"), ("POST", "/services/create"), ("DELETE", "/v1.45/plugins/x"),
    ("DELETE", "/networks/abc"), ("PUT", "/v1.45/plugins/x/enable"), ("PATCH", "/containers/x"),
])
def test_anything_else_is_refused_and_says_what(method, path):
    with pytest.raises(_rules.Refused, match="does not allow %s" % method):
        _rules.route(method, path)


@pytest.mark.parametrize("how,query,why", [
    ("image-create", {"fromSrc": ["http://10.0.0.1/rootfs.tar"]}, "from a URL"),
    ("build", {"remote": ["https://example.invalid/repo.git"]}, "remote context"),
    ("build", {"cgroupparent": ["system.slice"]}, "cgroupparent"),
    ("build", {"networkmode": ["bridge"]}, "host network"),
    ("build", {"version": ["2"]}, "BuildKit"),
])
def test_query_parameters_that_reach_outside_are_refused(how, query, why):
    with pytest.raises(_rules.Refused, match=why):
        _rules.check_query(how, query)


def test_an_import_from_the_request_body_and_a_plain_build_pass():
    _rules.check_query("image-create", {"fromSrc": ["-"], "repo": ["app"]})
    _rules.check_query("build", {"t": ["app"], "networkmode": ["host"], "version": ["1"]})


@pytest.mark.parametrize("host,why", [
    ({"Privileged": True}, "privileged: true gives the container the whole host"),
    ({"Binds": ["/:/host"]}, "bind mount of /: outside the repository's mount"),
    ({"Binds": ["/var/run/rediacc/docker-2880.sock:/d.sock"]}, "outside the repository's mount"),
    ({"Binds": ["/var/run/rediacc/secrets/2880:/s:ro"]}, "other repositories' secrets"),
    ({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e", "ReadOnly": True}]}, "outside"),
    ({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {"DriverConfig": {
        "Name": "local", "Options": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/x"}}}}]}, "remote filesystem"),
    ({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}, "volume type npipe"),
    ({"CapAdd": ["SYS_ADMIN"]}, "cap_add SYS_ADMIN"),
    ({"CapAdd": ["ALL"]}, "cap_add ALL"),
    ({"SecurityOpt": ["seccomp=unconfined"]}, "security_opt"),
    ({"PidMode": "host"}, "process namespace"),
    ({"UsernsMode": "host"}, "userns_mode"),
    ({"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]}, "host devices"),
    ({"DeviceRequests": [{"Driver": "nvidia", "Count": -1}]}, "host devices"),
    ({"DeviceCgroupRules": ["b 8:* rmw"]}, "host devices"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "host's network"),
    ({"CgroupParent": "system.slice"}, "cgroup"),
    ({"Runtime": "io.containerd.runsc.v1"}, "runtime"),
    ({"MaskedPaths": []}, "unmasks"),
    ({"Annotations": {"org.systemd.property.Slice": "'-.slice'"}}, "annotation"),
    ({"LogConfig": {"Type": "gelf", "Config": {"gelf-address": "udp://127.0.0.1:12201"}}}, "log driver gelf"),
    ({"NetworkMode": "bridge"}, "network mode bridge"),
    ({"NetworkMode": "container:other"}, "network mode"),
    ({"Binds": ["a:b:c:d"]}, "source:target"),
    ({"NetworkMode": "host", "_endpoints": {"other-project_default": {}}}, "network mode other-project_default"),
])
def test_container_settings_that_reach_outside_are_refused(paths, host, why):
    endpoints = host.pop("_endpoints", None)
    body = create(host, **({"NetworkingConfig": {"EndpointsConfig": endpoints}} if endpoints else {}))
    with pytest.raises(_rules.Refused, match=why):
        _rules.judge_body("container", body, paths)


def test_a_bind_through_a_link_to_another_repository_is_judged_where_it_resolves(paths, mount):
    with pytest.raises(_rules.Refused, match=r"resolves to .*/guid-b.*outside the repository's mount"):
        _rules.judge_body("container", create({"Binds": ["%s/escape:/x" % mount]}), paths)


def test_the_checkpoint_label_grants_nothing_through_the_sandbox(paths):
    body = create({"CapAdd": ["NET_ADMIN"]}, Labels={"rediacc.checkpoint": "true"})
    with pytest.raises(_rules.Refused, match="cap_add NET_ADMIN"):
        _rules.judge_body("container", body, paths)


def test_an_allowed_container_goes_on_resolved_in_the_host_network_without_raw_sockets(paths, mount):
    host = {"Binds": ["%s/data/../data:/data:ro,z" % mount, "cache:/cache"], "CapDrop": ["MKNOD"],
            "Mounts": [{"Type": "bind", "Source": "%s//data" % mount, "Target": "/d2"},
                       {"Type": "tmpfs", "Target": "/t"}],
            "NetworkMode": "default", "RestartPolicy": {"Name": "always"}}
    body = create(host, Env=["A=1"], NetworkingConfig={"EndpointsConfig": {"default": {"Aliases": None}}})
    out = json.loads(_rules.judge_body("container", body, paths))
    assert out["NetworkingConfig"] == {"EndpointsConfig": {"host": {}}}
    assert out["HostConfig"]["Binds"] == ["%s/data:/data:ro,z" % mount, "cache:/cache"]
    assert out["HostConfig"]["Mounts"][0]["Source"] == "%s/data" % mount
    assert out["HostConfig"]["NetworkMode"] == "host"
    assert out["HostConfig"]["CapDrop"] == ["MKNOD", "NET_RAW"]
    assert out["HostConfig"]["RestartPolicy"] == {"Name": "always"}
    assert out["Env"] == ["A=1"]


def test_the_repositorys_private_directory_is_not_for_containers(paths, mount):
    with pytest.raises(_rules.Refused, match=r"private \.rediacc directory"):
        _rules.judge_body("container", create({"Binds": ["%s/.rediacc:/x" % mount]}), paths)


@pytest.mark.parametrize("how,body,why", [
    ("exec", {"Cmd": ["sh"], "Privileged": True}, "privileged exec"),
    ("volume", {"Name": "v", "Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/"}},
     "outside the repository's mount"),
    ("volume", {"Name": "v", "Driver": "rexray"}, "driver rexray"),
    ("update", {"CgroupParent": "x.slice"}, "CgroupParent"),
    ("update", {"Devices": [{"PathOnHost": "/dev/mem"}]}, "host devices"),
    ("empty", {"HostConfig": {"Privileged": True}}, "start with a HostConfig"),
    ("container", [1, 2], "not a JSON object"),
])
def test_other_bodies_that_reach_outside_are_refused(paths, how, body, why):
    with pytest.raises(_rules.Refused, match=why):
        _rules.judge_body(how, json.dumps(body).encode(), paths)


def test_a_body_that_is_not_json_is_refused(paths):
    with pytest.raises(_rules.Refused, match="not JSON"):
        _rules.judge_body("container", b"{nope", paths)


def test_the_session_environment_is_built_whole_never_inherited():
    class Repo:
        name, network_id, mount = "shop-fork", 2880, "/mnt/rediacc/mounts/guid"
    env = _rules.environment(Repo(), term="xterm")
    assert env["DOCKER_HOST"] == "unix:///run/rediacc/sandbox/docker.sock"
    assert env["HOME"] == "/run/rediacc/sandbox/home" and env["TMPDIR"] == "/run/rediacc/sandbox/tmp"
    assert sorted(env) == sorted(["HOME", "TMPDIR", "USER", "LOGNAME", "SHELL", "PATH", "DOCKER_HOST", "TERM",
                                  "REDIACC_REPOSITORY", "REDIACC_NETWORK_ID", "REDIACC_WORKING_DIR",
                                  "REDIACC_SANDBOX"])


def test_landlock_allows_the_system_read_only_and_writes_only_to_the_mount_and_session():
    rules = dict(_rules.landlock_rules("/mnt/rediacc/mounts/a", exists=lambda _p: True))
    writable = sorted(p for p, rights in rules.items() if "write_file" in rights)
    assert writable == sorted(["/mnt/rediacc/mounts/a", "/run/rediacc/sandbox", "/tmp", "/var/tmp", *_rules.DEVICES])
    assert rules["/etc"] == _rules.READ and not any(p.startswith("/mnt/rediacc/mounts/") and p.endswith("/b")
                                                    for p in rules)
    assert not any(p in rules for p in ("/", "/mnt", "/mnt/rediacc", "/var", "/run", "/root", "/home"))


def test_landlock_rights_per_abi():
    assert _landlock.mask(["read_file", "refer"], 1) == 1 << 2
    assert _landlock.mask(["read_file", "refer"], 2) == (1 << 2) | (1 << 13)
    assert _landlock.mask(_landlock.SCOPES, 5) == 0 and _landlock.mask(_landlock.SCOPES, 6) == 3


def test_a_session_without_landlock_is_refused_before_anything():
    with pytest.raises(_landlock.LandlockError, match="no Landlock"):
        _landlock.restrict_self([], 0)


@pytest.mark.parametrize("args,environ,argv", [
    (["id", "-u"], {"SSH_ORIGINAL_COMMAND": "ls"}, ["id", "-u"]),
    ([], {"SSH_ORIGINAL_COMMAND": "ls -la; id"}, ["/bin/bash", "-c", "ls -la; id"]),
    ([], {}, ["/bin/bash", "-l"]),
])
def test_what_a_session_runs(args, environ, argv):
    assert _sandbox.command_for(args, environ) == argv


@pytest.mark.parametrize("head,why", [
    (b"GET /x", "not an HTTP/1.1 request"),
    (b"GET http://evil/x HTTP/1.1", "for a path"),
    (b"GET /x HTTP/1.1\r\nHost x", "malformed request header"),
    (b"GET /x HTTP/1.1\r\n Host: x", "malformed request header"),
])
def test_malformed_request_heads_are_refused(head, why):
    with pytest.raises(_rules.Refused, match=why):
        _sandbox.parse_head(head)


class Upstream:
    """A stand-in daemon on a real UNIX socket: records what reaches it, answers 200 and closes."""

    def __init__(self, path, answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"):
        self.path, self.received, self.answer = path, [], answer
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _complete(data):
        if b"\r\n\r\n" not in data:
            return False
        head, body = data.split(b"\r\n\r\n", 1)
        if b"Transfer-Encoding: chunked" in head:
            return body.endswith(b"0\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"Content-Length:")]
        return len(body) >= (length[0] if length else 0)

    def _serve(self):
        while True:
            conn = self.server.accept()[0]
            conn.settimeout(2)
            data = b""
            try:
                while not self._complete(data):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            if self.answer.startswith(b"HTTP/1.1 101"):  # a stream: echo what follows, then end
                conn.sendall(self.answer)
                try:
                    data += conn.recv(65536)
                except OSError:
                    pass
                self.received.append(data)
                conn.close()
                continue
            self.received.append(data)
            conn.sendall(self.answer)
            if b"Connection: close" in self.answer:
                conn.close()
            else:  # keep-alive, as dockerd after an answer without the stream: read what else comes
                try:
                    more = conn.recv(65536)
                except OSError:
                    more = b""
                self.received.append(more)
                conn.close()


def exchange(tmp_path, paths, request, **answer):
    upstream = Upstream(str(tmp_path / "daemon.sock"), **answer)
    refused = []
    gate = _sandbox.DockerGate(upstream.path, paths, refused.append)
    client, server = socket.socketpair()
    worker = threading.Thread(target=gate.handle, args=(server,))
    worker.start()
    client.sendall(request)
    client.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        answer += chunk
    worker.join(5)
    return answer, upstream.received, refused


def test_a_refused_request_never_reaches_the_daemon_and_the_client_reads_why(tmp_path, paths):
    body = create({"Privileged": True})
    answer, received, refused = exchange(tmp_path, paths, b"POST /v1.45/containers/create HTTP/1.1\r\nHost: docker"
                                         b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 403 Forbidden")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["message"].startswith("lockbox sandbox: privileged: true")
    assert received == [] and len(refused) == 1


def test_an_allowed_create_reaches_the_daemon_rewritten_one_request_per_connection(tmp_path, paths):
    body = create({"NetworkMode": "default"})
    smuggled = b"POST /v1.45/plugins/pull HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    answer, received, _refused = exchange(tmp_path, paths, b"POST /v1.45/containers/create HTTP/1.1\r\nHost: docker"
                                          b"\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s%s"
                                          % (len(body), body, smuggled))
    assert answer.endswith(b"ok")
    head, sent = received[0].split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and b"keep-alive" not in head
    assert json.loads(sent)["HostConfig"]["NetworkMode"] == "host"
    assert b"plugins" not in received[0]


def test_a_chunked_upload_passes_through_to_its_last_chunk_only(tmp_path, paths):
    answer, received, _refused = exchange(tmp_path, paths, b"POST /v1.45/images/load HTTP/1.1\r\nHost: docker\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                                          b"DELETE /v1.45/plugins/x HTTP/1.1\r\n\r\n")
    assert answer.endswith(b"ok")
    assert received[0].endswith(b"3\r\nabc\r\n0\r\n\r\n") and b"plugins" not in received[0]


@pytest.mark.parametrize("extra,why", [
    (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"both Content-Length and Transfer-Encoding"),
    (b"Content-Length: 4\r\nContent-Length: 0\r\n", b"2 content-length headers"),
    (b"Transfer-Encoding: gzip\r\n", b"transfer encoding gzip"),
    (b"Content-Length: -1\r\n", b"malformed Content-Length"),
])
def test_ambiguous_framing_is_refused(tmp_path, paths, extra, why):
    answer, received, _refused = exchange(tmp_path, paths, b"POST /v1.45/containers/x/exec HTTP/1.1\r\n" + extra
                                          + b"\r\n{}")
    assert answer.startswith(b"HTTP/1.1 403") and why in answer and received == []


# -- the repository's SSH key ---------------------------------------------------------------------

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1wZhUnCrFEIHJNbJ11+wJJqOoS6cMRSkgxp2T0Hi/J agent@laptop"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMaYhlLibAzxa8d0aIrE2JMdpvS3OM/G4Xgl5b9H50mA admin"


@pytest.fixture
def keyed(tmp_path):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
    state_dir = str(tmp_path / "state")
    with _state.HostState(state_dir) as host:
        host.put({"name": "shop:agent", "guid": "6c1f0a52-0b53-4c55-a1f3-0f4a8c2e9d11",
                  "network_id": 2880, "status": _state.READY, "is_fork": True})
    return state_dir, str(tmp_path / "root" / ".ssh" / "authorized_keys")


def key_run(keyed, check_mode=False, **params):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox_key as _sandbox_key
    state_dir, path = keyed
    return _sandbox_key.run(None, dict(params, state_dir=state_dir), check_mode=check_mode, authorized_keys=path)


def test_the_key_line_is_built_by_lockbox_with_the_forced_command_and_no_forwarding(keyed):
    assert key_run(keyed, check_mode=True, repository="shop:agent", public_key=ED25519)["changed"]
    assert not os.path.exists(keyed[1])
    assert key_run(keyed, repository="shop:agent", public_key=ED25519)["changed"]
    line = open(keyed[1]).read()
    assert line == ('restrict,pty,command="/usr/local/bin/renet sandbox --repo shop:agent --guid '
                    '6c1f0a52-0b53-4c55-a1f3-0f4a8c2e9d11" ssh-ed25519 %s lockbox-sandbox:shop:agent\n'
                    % ED25519.split()[1])
    assert oct(os.stat(keyed[1]).st_mode & 0o777) == "0o600"
    assert not key_run(keyed, repository="shop:agent", public_key=ED25519)["changed"]
    assert not key_run(keyed, check_mode=True, repository="shop:agent", public_key=ED25519)["changed"]
    assert key_run(keyed, repository="shop:agent", state="absent")["changed"]
    assert open(keyed[1]).read() == ""


@pytest.mark.parametrize("text,why", [
    ('command="/bin/sh" ' + ED25519, "not an SSH public key type"),
    ("no-pty " + ED25519, "not an SSH public key type"),
    (ED25519 + "\n" + OTHER, "one OpenSSH public key line"),
    ("ssh-ed25519", "one OpenSSH public key line"),
    ("ssh-ed25519 not*base64", "not base64"),
    ("ssh-rsa " + ED25519.split()[1], "does not hold a ssh-rsa key"),
    ("", "one OpenSSH public key line"),
])
def test_what_is_not_one_plain_public_key_is_refused(keyed, text, why):
    with pytest.raises(Exception, match=why):
        key_run(keyed, repository="shop:agent", public_key=text)
    assert not os.path.exists(keyed[1])


def test_a_key_that_already_logs_in_as_root_is_refused_and_nothing_changes(keyed):
    os.makedirs(os.path.dirname(keyed[1]))
    with open(keyed[1], "w") as handle:
        handle.write("# admins\n" + OTHER + "\n" + 'from="10.0.0.0/8",no-agent-forwarding ' + ED25519 + "\n")
    before = open(keyed[1]).read()
    with pytest.raises(Exception, match="already logs in as root without the sandbox"):
        key_run(keyed, repository="shop:agent", public_key=ED25519)
    assert open(keyed[1]).read() == before


def test_one_key_opens_one_repository(keyed):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
    with _state.HostState(keyed[0]) as host:
        host.put({"name": "blog", "guid": "0b0e3f36-4c0e-4a55-9d7a-1f3b8f1c2a33", "network_id": 2944,
                  "status": _state.READY, "is_fork": False})
    key_run(keyed, repository="blog", public_key=ED25519)
    with pytest.raises(Exception, match="already opens the sandbox of repository blog"):
        key_run(keyed, repository="shop:agent", public_key=ED25519)


def test_a_key_for_an_unknown_repository_is_refused(keyed):
    with pytest.raises(Exception, match="unknown repository 'nope'"):
        key_run(keyed, repository="nope", public_key=ED25519)


# -- one-shot tasks -------------------------------------------------------------------------------

# strace -f -qq -e status=failed, recorded in a task on Debian trixie (kernel 6.12, strace 6.13).
STRACE = "".join(line + "\n" for line in (
    '4113  openat(AT_FDCWD, "/mnt/rediacc/mounts", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = -1 EACCES'
    ' (Permission denied)',
    '4113  newfstatat(AT_FDCWD, "/usr/local/bin/ls", 0x7ffd5b9c6f40, 0) = -1 ENOENT (No such file or dire'
    'ctory)',
    '4120  epoll_ctl(4, EPOLL_CTL_ADD, 3, {events=EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, data=0x7f0e1c000b6'
    '8}) = -1 EPERM (Operation not permitted)',
    '4121  connect(3, {sa_family=AF_INET, sin_port=htons(22), sin_addr=inet_addr("10.0.2.15")}, 16) = -1 '
    'EPERM (Operation not permitted)',
    '4121  connect(3, {sa_family=AF_INET, sin_port=htons(22), sin_addr=inet_addr("10.0.2.15")}, 16) = -1 '
    'EPERM (Operation not permitted)',
    '4122  openat(AT_FDCWD, "/var/run/rediacc/secrets/2816/DB_PASSWORD", O_RDONLY) = -1 EACCES (Permissio'
    'n denied)',
    '4123  connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INE'
    'T6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 EPERM (Operation not permitted)',
    '4124  +++ exited with 3 +++',
))


def test_kernel_denials_are_read_from_strace_once_each_without_noise():
    assert _sandbox.kernel_denials(STRACE) == [
        {"syscall": "openat", "errno": "EACCES", "target": "/mnt/rediacc/mounts"},
        {"syscall": "connect", "errno": "EPERM", "target": "10.0.2.15:22"},
        {"syscall": "openat", "errno": "EACCES", "target": "/var/run/rediacc/secrets/2816/DB_PASSWORD"},
        {"syscall": "connect", "errno": "EPERM", "target": "[2001:db8::1]:443"},
    ]
    assert _sandbox.kernel_denials("") == [] and _sandbox.kernel_denials(None) == []


@pytest.mark.parametrize(("argv", "key", "why"), [
    ([], "k", "a task needs a command"),
    (["true"], None, "give its key"),
])
def test_a_task_without_a_command_or_key_is_refused_before_anything(keyed, argv, key, why):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_task as _repo_task
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository

    class Layout:
        state_dir = keyed[0]
    with pytest.raises(Exception, match=why):
        _repo_task.run_task(None, Layout(), "shop:agent", argv,
                            key=_repository.Key(b"k", "key") if key else None)


def test_a_task_of_an_unknown_repository_is_refused(keyed):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_task as _repo_task

    class Layout:
        state_dir = keyed[0]
    with pytest.raises(Exception, match="unknown repository 'nope'"):
        _repo_task.run_task(None, Layout(), "nope", ["true"], key=None)


SMUGGLED = b"POST /v1.45/containers/create HTTP/1.1\r\nContent-Length: 33\r\n\r\n{\"HostConfig\": {\"Privileged\": 1}}"


def test_an_upgrade_asked_of_an_endpoint_that_does_not_stream_never_opens_the_way_back(tmp_path, paths):
    body = create()
    _answer, received, _refused = exchange(
        tmp_path, paths, b"POST /v1.45/containers/create HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        b"Content-Length: %d\r\n\r\n%s%s" % (len(body), body, SMUGGLED))
    head = received[0].split(b"\r\n\r\n", 1)[0]
    assert b"Connection: close" in head and b"Upgrade" not in head
    assert not any(b"Privileged" in part for part in received)


def test_an_exec_start_the_daemon_refuses_ends_the_connection_before_the_stream(tmp_path, paths):
    answer, received, _refused = exchange(
        tmp_path, paths, b"POST /v1.45/exec/nope/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        b"Content-Length: 2\r\n\r\n{}" + SMUGGLED,
        answer=b"HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n{\"message\": \"nope\"}")
    assert answer.startswith(b"HTTP/1.1 404") and answer.endswith(b'{"message": "nope"}')
    assert not any(b"Privileged" in part for part in received)


def test_an_exec_start_the_daemon_switches_streams_both_ways(tmp_path, paths):
    answer, received, _refused = exchange(
        tmp_path, paths, b"POST /v1.45/exec/77ab/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        b"Content-Length: 2\r\n\r\n{}stdin-bytes",
        answer=b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nstdout-bytes")
    assert answer.endswith(b"stdout-bytes")
    assert b"Connection: Upgrade" in received[0] and received[0].endswith(b"stdin-bytes")


@pytest.mark.parametrize("path", [
    "/v1.45/containers/..%2fplugins%2fpull/start", "/containers//create", "/v1.45/containers/x/../../plugins/x",
    "/containers/x/%2E%2E/start", "/containers/x\\start", "/containers/\u00e9/start", "/containers/x/./start",
])
def test_paths_a_server_could_read_otherwise_are_refused(path):
    with pytest.raises(_rules.Refused, match="not in plain form"):
        _rules.route("POST", path)
