# SPDX-License-Identifier: GPL-3.0-or-later
"""After converge (alpha and beta up with the same compose file) and the fork quartet."""

import json
import os
import shlex
import time

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("fleet-b")

STATE = "/var/lib/rediacc/state/repos"


def record(host, name):
    return json.loads(host.file("%s/%s.json" % (STATE, name)).content_string)


def docker(host, name, command):
    return "docker -H unix:///var/run/rediacc/docker-%d.sock %s" % (record(host, name)["network_id"], command)


def container(host, name, service):
    """The service's container, running or not (an exited one is what the watchdog tests look at)."""
    return host.check_output(docker(host, name, "ps -aq --filter label=com.docker.compose.service=%s" % service))


def service_ip(host, name, service):
    return host.check_output(docker(host, name, "inspect -f '{{index .Config.Labels \"rediacc.service_ip\"}}' %s"
                                    % container(host, name, service)))


def exec_in(host, name, service, command):
    return host.run(docker(host, name, "exec %s %s" % (container(host, name, service), command)))


def test_same_compose_file_runs_in_both_on_their_own_ips(host):
    alpha, beta = service_ip(host, "alpha", "web"), service_ip(host, "beta", "web")
    assert alpha != beta
    listeners = host.check_output("ss -Hltn 'sport = :8080'")
    assert alpha in listeners and beta in listeners
    assert "0.0.0.0:8080" not in listeners and "[::]:8080" not in listeners
    assert record(host, "alpha")["guid"] in host.check_output("curl -s http://%s:8080/" % alpha)
    assert record(host, "beta")["guid"] in host.check_output("curl -s http://%s:8080/" % beta)


def test_services_get_ips_in_compose_order_inside_their_26(host):
    network_id = record(host, "alpha")["network_id"]
    table = json.loads(host.file("%s/.rediacc/services.json" % mount(host, "alpha")).content_string)["slots"]
    assert table["client"] == table["web"] + 1  # compose order within the file
    for service in ("web", "client", "api"):
        slot = table[service] + 2 + network_id  # .0 and .1 of the /26 are never given out
        assert service_ip(host, "alpha", service) == "127.0.%d.%d" % (slot // 256, slot % 256)


def test_sibling_reaches_web_by_service_name(host):
    out = exec_in(host, "alpha", "client", "wget -qO- -T 5 http://web:8080/")
    assert out.rc == 0 and record(host, "alpha")["guid"] in out.stdout


def test_other_repository_is_refused_by_the_kernel(host):
    beta_web = service_ip(host, "beta", "web")
    out = exec_in(host, "alpha", "client", "wget -qO- -T 5 http://%s:8080/" % beta_web)
    assert out.rc != 0 and "Operation not permitted" in out.stderr


def test_fork_has_its_own_ips_and_daemon_and_cannot_reach_its_parent(host):
    fork, parent = record(host, "alpha:try"), record(host, "alpha")
    assert fork["network_id"] != parent["network_id"]
    assert host.service("rediacc-docker-%d" % fork["network_id"]).is_running
    # Containers inherited from the parent (its networkId, its slices) were removed at up.
    owners = host.check_output(docker(host, "alpha:try", "ps -a --format '{{.Label \"rediacc.network_id\"}}'"))
    assert set(owners.split()) == {str(fork["network_id"])}
    fork_web = service_ip(host, "alpha:try", "web")
    assert fork_web != service_ip(host, "alpha", "web")
    # The fork ran its own up(): its page names the fork, served on the fork's own IP.
    assert fork["guid"] in host.check_output("curl -s http://%s:8080/" % fork_web)
    out = exec_in(host, "alpha:try", "client", "wget -qO- -T 5 http://%s:8080/" % service_ip(host, "alpha", "web"))
    assert out.rc != 0 and "Operation not permitted" in out.stderr


def test_restart_policy_is_stripped_and_the_watchdog_restarts(host):
    web = container(host, "beta", "web")
    assert host.check_output(docker(host, "beta", "inspect -f '{{.HostConfig.RestartPolicy.Name}}' %s" % web)) == "no"
    saved = json.loads(host.file("%s/web/.rediacc.json" % mount(host, "beta")).content_string)
    assert saved["restart"] == {"web": "always"}
    pid = host.check_output(docker(host, "beta", "inspect -f '{{.State.Pid}}' %s" % web))
    host.run_expect([0], "kill -9 %s" % pid)
    state = ""
    for _attempt in range(60):  # the watchdog reacts to the die event; a deadline, not a speed check
        time.sleep(1)
        state = host.check_output(docker(host, "beta", "inspect -f '{{.State.Status}} {{.State.Pid}}' %s" % web))
        if state.startswith("running") and state.split()[1] != pid:
            break
    assert state.startswith("running") and state.split()[1] != pid
    name = host.check_output(docker(host, "beta", "inspect -f '{{.Name}}' %s" % web)).lstrip("/")
    assert "renet watchdog: started %s" % name in host.check_output("journalctl -u rediacc-watchdog --no-pager")
    # The watchdog never failed (a container it cannot start is reported, not fatal).
    assert "Failed with result" not in host.check_output("journalctl -u rediacc-watchdog --no-pager")


def mount(host, name):
    return "/mnt/rediacc/mounts/%s" % record(host, name)["guid"]


def test_hostile_compose_file_is_refused_and_nothing_starts(host):
    before = host.check_output(docker(host, "alpha", "ps -aq | wc -l"))
    out = host.run("cd %s/hostile && renet compose -- up -d" % mount(host, "alpha"))
    assert out.rc == 1
    for problem in ("privileged: true", "pid: host", "ipc: host", "bind mount of /:", "bind mount of /etc:",
                    "bind mount of /var/run/docker.sock", "--unsafe"):
        assert problem in out.stderr
    assert host.check_output(docker(host, "alpha", "ps -aq | wc -l")) == before


def test_unsafe_allows_the_hostile_file(host):
    hostile = "%s/hostile" % mount(host, "alpha")
    out = host.run("cd %s && renet compose --unsafe -- up -d escape" % hostile)
    try:
        assert out.rc == 0, out.stderr
        assert container(host, "alpha", "escape")
    finally:
        host.run("cd %s && renet compose -- down" % hostile)
    assert container(host, "alpha", "escape") == ""


CADDY_ROOT = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt"


def fetch_route(host, name):
    """GET https://<name>/ through Caddy on this host, trusting Caddy's internal CA."""
    out = None
    for _attempt in range(30):  # certificates are issued when the route appears: a deadline, not a speed check
        out = host.run("curl -sS --max-time 10 --cacert %s --resolve %s:443:127.0.0.1 https://%s/"
                       % (CADDY_ROOT, name, name))
        if out.rc == 0:
            return out.stdout
        time.sleep(2)
    raise AssertionError("no answer from %s: %s" % (name, out.stderr))


def test_router_serves_each_repository_at_its_host_name(host):
    assert record(host, "alpha")["guid"] in fetch_route(host, "web.alpha.fleet-b.test.lan")
    assert record(host, "beta")["guid"] in fetch_route(host, "web.beta.fleet-b.test.lan")


def test_a_custom_domain_goes_to_the_grand_repository_only(host):
    """alpha, beta and the fork all label api with Host(`api.example.test`): alpha (first by name) has it."""
    page = fetch_route(host, "api.example.test")
    assert record(host, "alpha")["guid"] in page
    assert record(host, "alpha:try")["guid"] not in page


def test_router_serves_the_fork_under_the_fork_name(host):
    assert record(host, "alpha:try")["guid"] in fetch_route(host, "web-fork-try.alpha.fleet-b.test.lan")


def test_traefik_file_has_the_same_routes(host):
    config = json.loads(host.file("/etc/rediacc/traefik/lockbox.yml").content_string)
    rules = sorted(r["rule"] for r in config["http"]["routers"].values())
    assert rules == ["Host(`api.example.test`)", "Host(`web-fork-try.alpha.fleet-b.test.lan`)",
                     "Host(`web.alpha.fleet-b.test.lan`)", "Host(`web.beta.fleet-b.test.lan`)"]
    upstreams = {s["loadBalancer"]["servers"][0]["url"] for s in config["http"]["services"].values()}
    assert "http://%s:8080" % service_ip(host, "beta", "web") in upstreams


# systemd-networkd would take the veth over (the guest's .network matches every ether link): unmanage it first.
UNMANAGED = "/run/systemd/network/00-lbx-outside.network"
OUTSIDE = ("printf '[Match]\\nName=lbx-*\\n\\n[Link]\\nUnmanaged=yes\\n' > %s && "
           "(networkctl reload || true) && sleep 1 && "
           "ip netns add lbx-outside && ip link add lbx-out0 type veth peer name lbx-out1 netns lbx-outside && "
           % UNMANAGED +
           "ip addr add 192.0.2.1/24 dev lbx-out0 && ip link set lbx-out0 up && "
           "ip -n lbx-outside addr add 192.0.2.2/24 dev lbx-out1 && ip -n lbx-outside link set lbx-out1 up")


UDP_RECEIVE = """
import socket, subprocess
receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
receiver.bind(("%s", 5353))
receiver.settimeout(10)
send = ("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        ".sendto(b'datagram-from-outside', ('192.0.2.1', 5353))")
subprocess.run(["ip", "netns", "exec", "lbx-outside", "python3", "-c", send], check=True)
print(receiver.recvfrom(100)[0].decode())
"""


def test_tcp_port_is_forwarded_from_outside_to_the_first_claimant(host):
    """A client behind a veth pair (a real interface, not lo) reaches alpha's web on host port 8080."""
    host.run("ip netns del lbx-outside; ip link del lbx-out0")
    host.run_expect([0], OUTSIDE)
    try:
        out = host.run("ip netns exec lbx-outside curl -sS --max-time 10 http://192.0.2.1:8080/")
        assert out.rc == 0 and record(host, "alpha")["guid"] in out.stdout, out.stderr
        # UDP: a real datagram sent from outside arrives at the address of the service labelled
        # rediacc.udp_ports=5353 (a listener there stands in for it: busybox has no UDP server).
        received = host.run("python3 -c %s" % shlex.quote(UDP_RECEIVE % service_ip(host, "alpha", "client")))
        assert received.rc == 0 and "datagram-from-outside" in received.stdout, received.stderr
    finally:
        host.run("ip netns del lbx-outside; ip link del lbx-out0; rm -f %s; networkctl reload" % UNMANAGED)
    ruleset = host.check_output("nft list table ip lockbox_forward")
    assert "tcp dport 8080 dnat to %s:8080" % service_ip(host, "alpha", "web") in ruleset
    assert "udp dport 5353 dnat to %s:5353" % service_ip(host, "alpha", "client") in ruleset
    assert "ip daddr 127.0.0.0/8 drop" in ruleset
    assert ruleset.count("dport 8080") == 1  # beta and the fork claim 8080 too: alpha keeps it


CONTRACT = "contract/stack"


def contract_env(host, name):
    text = host.file("%s/%s/out/env.txt" % (mount(host, name), CONTRACT)).content_string
    return dict(line.split("=", 1) for line in text.splitlines())


def test_repository_daemon_keeps_everything_inside_the_volume(host):
    info = json.loads(host.check_output(docker(host, "alpha", "info --format '{{json .}}'")))
    assert info["DockerRootDir"] == "%s/.rediacc/docker/data" % mount(host, "alpha")
    assert info["ExperimentalBuild"] is True
    assert "bridge" not in host.check_output(docker(host, "alpha", "network ls --format '{{.Name}}'")).split()


def test_containers_get_their_ip_and_network_id(host):
    web = container(host, "alpha", "web")
    env = host.check_output(docker(host, "alpha", "inspect -f '{{json .Config.Env}}' %s" % web))
    assert "SERVICE_IP=%s" % service_ip(host, "alpha", "web") in json.loads(env)
    assert "REDIACC_NETWORK_ID=%d" % record(host, "alpha")["network_id"] in json.loads(env)


def test_nested_rediaccfile_ran_past_a_failing_command_with_every_service_ip(host):
    """Two levels down, -f deploy/compose.yaml, `false` before the real work: up() carried on."""
    env = contract_env(host, "alpha")
    assert env["API_IP"] == service_ip(host, "alpha", "api")
    assert env["WEB_IP"] == service_ip(host, "alpha", "web")
    assert "FLAKY_IP" in env  # a compose file that no Rediaccfile drives still gets its IPs
    assert env["REDIACC_NETWORK_ID"] == str(record(host, "alpha")["network_id"])
    assert env["REDIACC_REPOSITORY"] == record(host, "alpha")["guid"]
    assert env["REDIACC_WORKING_DIR"] == mount(host, "alpha") + "/"


def test_user_network_mode_is_overwritten_and_extra_hosts_kept(host):
    api = container(host, "alpha", "api")
    assert host.check_output(docker(host, "alpha", "inspect -f '{{.HostConfig.NetworkMode}}' %s" % api)) == "host"
    hosts = exec_in(host, "alpha", "api", "cat /etc/hosts").stdout
    assert "192.0.2.10\tmirror.example" in hosts
    assert "%s\tkeeper" % service_ip(host, "alpha", "keeper") in hosts


def test_containers_resolve_names_through_the_host_stub_resolver_and_nothing_more(host):
    out = exec_in(host, "alpha", "client", "nslookup localhost")
    assert out.rc == 0 and "127.0.0.1" in out.stdout, out.stdout + out.stderr
    out = exec_in(host, "alpha", "client", "wget -qO- -T 5 http://127.0.0.53:80/")
    assert out.rc != 0 and "Operation not permitted" in out.stderr


def watchdog_said(host, text, since, seconds=60):
    """Wait until the watchdog's journal (since ``since``, a journalctl time) holds ``text``."""
    journal = ""
    for _attempt in range(seconds):  # a deadline, not a speed check
        journal = host.check_output("journalctl -u rediacc-watchdog --no-pager -o cat --since %s" % shlex.quote(since))
        if text in journal:
            return journal
        time.sleep(1)
    raise AssertionError("the watchdog never said %r; its journal since %s:\n%s" % (text, since, journal))


def now(host):
    return host.check_output("date '+%Y-%m-%d %H:%M:%S'")


def wait_for(host, name, service, wanted, seconds=60):
    state = ""
    for _attempt in range(seconds):  # the watchdog reacts to events; a deadline, not a speed check
        state = host.check_output(docker(host, name, "inspect -f '{{.State.Status}}' %s"
                                         % container(host, name, service)))
        if state == wanted:
            return state
        time.sleep(1)
    return state


def test_deploy_restart_condition_any_is_restarted_like_always(host):
    api = container(host, "alpha", "api")
    host.run_expect([0], docker(host, "alpha", "kill %s" % api))
    assert wait_for(host, "alpha", "api", "running") == "running"


def test_on_failure_limit_is_honoured(host):
    project = "cd %s/contract/flaky && renet compose -- " % mount(host, "beta")
    runs = "%s/contract/flaky/data/runs.txt" % mount(host, "beta")
    since = now(host)
    host.run_expect([0], project + "up -d")
    try:
        # Three runs (one start, two restarts): the watchdog says it leaves it stopped at the limit.
        watchdog_said(host, "-flaky-1 stopped (networkId", since, seconds=120)
        assert len(host.file(runs).content_string.split()) == 3
    finally:
        host.run(project + "down")


def test_a_service_stopped_on_purpose_stays_stopped(host):
    project = "cd %s/%s && renet compose -- -f deploy/compose.yaml " % (mount(host, "beta"), CONTRACT)
    since = now(host)
    host.run_expect([0], project + "stop keeper")
    watchdog_said(host, "stopped on purpose", since)
    assert wait_for(host, "beta", "keeper", "exited", seconds=1) == "exited"
    host.run_expect([0], project + "start keeper")
    assert wait_for(host, "beta", "keeper", "running") == "running"


def test_watchdog_refuses_a_restart_whose_bind_now_leads_outside(host):
    """dockerd resolves a bind again at every start: a symlink swapped in meanwhile must not reach /etc."""
    keep = "%s/%s/deploy/keep" % (mount(host, "alpha"), CONTRACT)
    host.run_expect([0], "mv %s %s.real && ln -s /etc %s" % (keep, keep, keep))
    try:
        since = now(host)
        host.run_expect([0], docker(host, "alpha", "kill %s" % container(host, "alpha", "keeper")))
        watchdog_said(host, "now resolves to /etc", since)
        assert wait_for(host, "alpha", "keeper", "exited", seconds=1) == "exited"
    finally:
        host.run("rm %s && mv %s.real %s" % (keep, keep, keep))
    assert wait_for(host, "alpha", "keeper", "running") == "running"


def test_hostile_spellings_of_host_paths_are_refused(host):
    hostile = "%s/hostile" % mount(host, "alpha")
    host.run_expect([0], "ln -sfn /etc %s/link" % hostile)
    before = host.check_output(docker(host, "alpha", "ps -aq | wc -l"))
    out = host.run("cd %s && renet compose -- up -d sneaky" % hostile)
    assert out.rc == 1
    for problem in ("service sneaky: cap_add SYS_ADMIN", "security_opt seccomp=unconfined", "userns_mode: host",
                    "devices", "%s/link/shadow (resolves to /etc/shadow)" % hostile,
                    "bind mount of /mnt/rediacc/mounts:", "/run/rediacc", "volume hostpath: driver_opts device"):
        assert problem in out.stderr, problem
    assert host.check_output(docker(host, "alpha", "ps -aq | wc -l")) == before


def test_renet_info_prints_every_info_as_text(host):
    out = host.check_output("renet info alpha")
    assert "contract services: api keeper" in out
    assert json.loads(host.check_output("renet info alpha --json"))
