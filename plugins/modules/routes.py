#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: routes
short_description: Bring the router's route table in step with the running repositories
version_added: 0.2.0
description:
  - Every running container labelled C(rediacc.service_port) gets the route
    C(https://{service}.{repo}.{machine}.{base_domain}) to its service IP; a fork's services get
    C({service}-fork-{tag}.{parent}.{machine}.{base_domain}).
  - Writes the table as a Caddyfile fragment (the embedded router; Caddy is reloaded when it changed)
    and, when configured, as a Traefik file-provider configuration.
  - Ports listed in C(rediacc.tcp_ports) / C(rediacc.udp_ports) are forwarded from the host's
    interfaces to the service by nftables DNAT (table C(ip lockbox_forward)); a port already forwarded
    for another service is reported in RV(conflicts) and not forwarded. Loopback stays unreachable
    from outside for everything else.
  - Reads the router settings written by the C(lockbox.fleet.router) role (C(/etc/rediacc/router.json)).
    The host's watchdog runs the same synchronisation every few seconds, and C(repo up) runs it at once.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
attributes:
  diff_mode:
    description: The route list says what is served.
    support: none
options:
  router_config:
    description: The router settings file.
    type: path
    default: /etc/rediacc/router.json
"""

EXAMPLES = r"""
- name: Routes now
  lockbox.fleet.routes:
  register: table

- name: Every host name served
  ansible.builtin.debug:
    msg: "{{ table.routes | map(attribute='host') }}"
"""

RETURN = r"""
forwards:
  description: TCP/UDP ports forwarded from the host's interfaces to a service.
  returned: always
  type: list
  elements: dict
  sample: [{"protocol": "tcp", "port": 5432, "address": "127.0.24.195", "repository": "marketing", "service": "db"}]
conflicts:
  description: Forwards not made because another service already has the host port (C(taken_by)).
  returned: always
  type: list
  elements: dict
routes:
  description: The route table.
  returned: always
  type: list
  elements: dict
  sample: [{"host": "web.marketing.server-1.example.com", "upstream": "127.0.24.194:8080",
            "repository": "marketing", "service": "web", "network_id": 6336, "address": "127.0.24.194"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            router_config=dict(type="path", default=_routes.ROUTER_CONFIG),
            **_module.LAYOUT_ARGS),
        supports_check_mode=True,
    )
    _module.run(module, _routes.run)


if __name__ == "__main__":
    main()
