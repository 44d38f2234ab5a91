#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_daemon
short_description: The Docker daemon of one repository
version_added: 0.2.0
description:
  - Every repository has its own dockerd, run by the systemd unit C(rediacc-docker-<networkId>.service), with
    socket C(/var/run/rediacc/docker-<networkId>.sock), data-root C(<mount>/.rediacc/docker/data)
    inside the encrypted volume, its own exec-root and pidfile, C(bridge=none), C(iptables=false),
    experimental features on, and its containers in the repository's slice C(rediacc-<networkId>.slice)
    (see M(lockbox.fleet.loopback_net)).
  - C(started) writes the configuration and unit, starts the daemon and waits until its API answers.
    A running daemon is restarted only when its configuration or unit really changed.
  - C(stopped) stops it (its containers stop with it); C(absent) also removes the unit and configuration.
  - The unit requires the repository's mount, so it never runs against an unmounted directory.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.attributes.ACTIONS_ONLY
  - lockbox.fleet.repo
  - lockbox.fleet.repo.NAME
options:
  state:
    description: What the daemon should be.
    type: str
    choices: [started, stopped, absent]
    default: started
"""

EXAMPLES = r"""
- name: Start the daemon of repository marketing (it must be opened and mounted)
  lockbox.fleet.repo_daemon:
    name: marketing

- name: Run docker against it
  ansible.builtin.command: docker -H unix:///var/run/rediacc/docker-6336.sock ps
  changed_when: false
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
daemon:
  description: The daemon after the run.
  returned: always
  type: dict
  sample:
    name: marketing
    network_id: 6336
    unit: rediacc-docker-6336.service
    socket: /var/run/rediacc/docker-6336.sock
    docker_host: unix:///var/run/rediacc/docker-6336.sock
    config: /etc/rediacc/docker/6336.json
    data_root: /mnt/rediacc/mounts/0b6f3c2e-8f5d-4d8e-9a57-2f1f0f4c1a11/.rediacc/docker/data
    active: true
    version: 26.1.5+dfsg1
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["started", "stopped", "absent"], default="started"),
            **_module.LAYOUT_ARGS),
        supports_check_mode=True,
    )
    _module.run(module, _repo_daemon.run)


if __name__ == "__main__":
    main()
