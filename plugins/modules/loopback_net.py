#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: loopback_net
short_description: A repository's loopback /26 and the kernel rules that isolate it
version_added: 0.2.0
description:
  - A repository with networkId C(n) owns the /26 at C(127.0.0.0 + n). Its containers run in
    the systemd slice C(rediacc-<n>.slice) (the cgroup parent of its dockerd). This module keeps
    that slice and its cgroup socket-address eBPF programs in place.
  - The programs rewrite binds of C(0.0.0.0)/C(127.0.0.1) (and C(::)/C(::1)) to the
    repository's address and refuse any bind, connect or UDP send to a loopback address outside
    the /26 (the caller gets EPERM). Each service's own IP is applied by C(renet compose) in the
    service's slice C(rediacc-<n>-s<slot>.slice), which runs before this guard.
  - Processes outside the slice (the host, the router) are not affected and reach every repository.
  - A fork's egress is limited. Its containers and sandbox sessions reach its own /26, the host's stub
    resolver (C(127.0.0.53) port 53) and the IPv4 networks in its allowlist (O(egress_allow)), nothing else.
    Connects and UDP sends elsewhere fail with EPERM; real IPv6 destinations are refused. A new fork's
    allowlist is empty, so its parent's production endpoints (databases, APIs, the host's router, which
    would route to the parent) stay out of reach until the operator names them. Grand repositories are not
    limited.
  - Linux routes all of C(127.0.0.0/8) to the loopback device, so no address has to be added.
  - C(state=absent) stops the service slices and the repository slice and detaches the programs;
    the repository's daemon must be stopped first (see M(lockbox.fleet.repo_daemon)).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.attributes.ACTIONS_ONLY
  - lockbox.fleet.repo
  - lockbox.fleet.repo.NAME
options:
  egress_allow:
    description:
      - A fork's egress allowlist, replacing the one it has. IPv4 addresses or networks
        (C(192.0.2.10), C(10.20.0.0/16), C(0.0.0.0/0) for any host); loopback is judged first, so no
        entry opens another repository's addresses, and entries inside C(127.0.0.0/8) are refused. An empty list
        allows nothing beyond loopback. Refused for a grand repository. Omitted, the allowlist is left as it is.
    type: list
    elements: str
  state:
    description: Whether the slice and its programs are in place.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Needs a kernel with cgroup v2 and C(CONFIG_CGROUP_BPF) (every current distribution kernel), and root.
"""

EXAMPLES = r"""
- name: Isolate the network of repository marketing
  lockbox.fleet.loopback_net:
    name: marketing

- name: Let the fork marketing:try reach the staging database and nothing else outside
  lockbox.fleet.loopback_net:
    name: marketing:try
    egress_allow: [10.20.0.15]

- name: Remove its rules (after its daemon is stopped)
  lockbox.fleet.loopback_net:
    name: marketing
    state: absent
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
network:
  description: The repository's network after the run.
  returned: always
  type: dict
  sample:
    name: marketing
    network_id: 6336
    subnet: 127.0.24.192/26
    address: 127.0.24.193
    slice: rediacc-6336.slice
    cgroup: /sys/fs/cgroup/rediacc.slice/rediacc-6336.slice
    guarded: true
    services: [{"slot": 0, "slice": "rediacc-6336-s0.slice", "address": "127.0.24.194"}]
    egress_allow: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            egress_allow=dict(type="list", elements="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            **_module.LAYOUT_ARGS),
        supports_check_mode=True,
    )
    _module.run(module, _loopback_net.run)


if __name__ == "__main__":
    main()
