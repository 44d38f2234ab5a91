# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repository's own dockerd: its daemon.json and systemd unit (on-host contract of seed 000)."""

from __future__ import annotations

import json

SOCKET_DIR = "/var/run/rediacc"


def socket_path(network_id, socket_dir=SOCKET_DIR):
    return "%s/docker-%d.sock" % (socket_dir, network_id)


def unit_name(network_id):
    return "rediacc-docker-%d.service" % network_id


def daemon_config(mount, network_id, socket_dir=SOCKET_DIR):
    """daemon.json: data inside the encrypted volume, no bridge, no iptables, experimental on."""
    return {
        "hosts": ["unix://" + socket_path(network_id, socket_dir)],
        "data-root": "%s/.rediacc/docker/data" % mount,
        "exec-root": "/run/rediacc/docker-%d" % network_id,
        "pidfile": "/run/rediacc/docker-%d.pid" % network_id,
        "bridge": "none",
        "iptables": False,
        "ip6tables": False,
        "ip-forward": False,
        "ip-masq": False,
        "experimental": True,
        "live-restore": False,
        "exec-opts": ["native.cgroupdriver=systemd"],
        "cgroup-parent": "rediacc-%d.slice" % network_id,
    }


def render_config(mount, network_id, socket_dir=SOCKET_DIR):
    return json.dumps(daemon_config(mount, network_id, socket_dir), indent=2, sort_keys=True) + "\n"


def unit_content(mount, network_id, config_path):
    """One dockerd per repository, started after (and stopped before) its mount."""
    return "\n".join([
        "# Managed by lockbox.fleet: the Docker daemon of the repository mounted at %s." % mount,
        "[Unit]",
        "Description=lockbox repository dockerd (networkId %d)" % network_id,
        "After=network.target containerd.service",
        "RequiresMountsFor=%s" % mount,
        "",
        "[Service]",
        "Type=notify",
        "ExecStart=/usr/sbin/dockerd --config-file %s" % config_path,
        "ExecReload=/bin/kill -s HUP $MAINPID",
        "Delegate=yes",
        "KillMode=process",
        "Restart=on-failure",
        "TimeoutStartSec=120",
        "LimitNOFILE=1048576",
        "",
    ])
