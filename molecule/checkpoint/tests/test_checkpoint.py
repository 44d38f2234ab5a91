# SPDX-License-Identifier: GPL-3.0-or-later
"""After the checkpoint side effect on fleet-a: where checkpoints live, and what a restore leaves."""

import json
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("fleet-a")


def ticker(host):
    return json.loads(host.file("/var/lib/rediacc/state/repos/ticker.json").content_string)


def docker(host, args):
    return "docker -H unix:///var/run/rediacc/docker-%d.sock %s" % (ticker(host)["network_id"], args)


def test_checkpoints_are_inside_the_encrypted_volume_root_only(host):
    mount = "/mnt/rediacc/mounts/%s" % ticker(host)["guid"]
    assert host.mount_point(mount).device.startswith("/dev/mapper/lockbox-")
    root = host.file(mount + "/.rediacc/checkpoint")
    assert root.is_directory and root.user == "root" and root.mode == 0o700
    manifest = json.loads(host.file(mount + "/.rediacc/checkpoint/killed/manifest.json").content_string)
    assert [c["service"] for c in manifest["containers"]] == ["counter"]  # the db is never checkpointed
    assert host.file(mount + "/.rediacc/checkpoint/killed/manifest.json").mode == 0o600


def test_only_the_labelled_service_gets_criu_s_capabilities_and_every_one_its_criu_config(host):
    caps = host.check_output(docker(host, "inspect -f '{{.HostConfig.CapAdd}}' counter-counter-1"))
    assert "CHECKPOINT_RESTORE" in caps
    # Never NET_ADMIN: in the host network namespace a netfilter DNAT rule of the service's own
    # would reach another repository past the guard. The kernel's view, not only Docker's:
    pid = host.check_output(docker(host, "inspect -f '{{.State.Pid}}' counter-counter-1"))
    effective = int(host.check_output("awk '/^CapEff/ {print $2}' /proc/%s/status" % pid), 16)
    assert "NET_ADMIN" not in caps and not effective & (1 << 12)  # CAP_NET_ADMIN is bit 12
    assert "CHECKPOINT_RESTORE" not in host.check_output(docker(host, "inspect -f '{{.HostConfig.CapAdd}}' "
                                                                "counter-db-1"))
    annotations = host.check_output(docker(host, "inspect -f '{{json .HostConfig.Annotations}}' counter-db-1"))
    assert json.loads(annotations) == {"org.criu.config": "/run/rediacc/criu/%d.conf" % ticker(host)["network_id"]}


def test_a_compose_file_cannot_choose_runtime_settings_through_annotations(host):
    mount = "/mnt/rediacc/mounts/%s" % ticker(host)["guid"]
    project = mount + "/annotated"
    host.run_expect([0], "mkdir -p %s" % project)
    host.run_expect([0], "printf '%%s\\n' 'services:' '  x:' '    image: lockbox-test/busybox:1' "
                         "'    annotations:' '      org.systemd.property.Slice: \"system.slice\"' "
                         "'      org.criu.config: /tmp/evil.conf' > %s/compose.yaml" % project)
    try:
        out = host.run("cd %s && renet compose -- up -d" % project)
        assert out.rc != 0
        assert "annotation org.criu.config is read by the container runtime" in out.stderr
        assert "annotation org.systemd.property.Slice" in out.stderr
        assert "annotated-x-1" not in host.check_output(docker(host, "ps -a --format '{{.Names}}'"))
    finally:
        host.run("rm -rf %s" % project)


def test_no_stray_cgroup_is_left_by_the_restores(host):
    """Restored processes went into the new container's scope: no cgroup of an old container is left."""
    scopes = host.check_output("find /sys/fs/cgroup/rediacc.slice/rediacc-%d.slice -name 'docker-*.scope' -type d"
                               % ticker(host)["network_id"]).split()
    ids = host.check_output(docker(host, "ps -q --no-trunc")).split()
    assert sorted(scopes) == sorted(s for s in scopes if any(s.endswith("docker-%s.scope" % i) for i in ids))
    for container in ids:
        assert host.service("docker-%s.scope" % container).is_running


def test_the_repository_daemon_restores_without_hardware_breakpoints(host):
    unit = "rediacc-docker-%d.service" % ticker(host)["network_id"]
    assert "CRIU_FAULT=130" in host.check_output("systemctl show -p Environment %s" % unit)
