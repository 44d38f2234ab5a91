#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_transfer
short_description: Copy a repository's encrypted image to another fleet host, whole or as a difference
version_added: 0.2.0
description:
  - Runs on the source host. Makes a read-only BTRFS snapshot of the repository's subvolume (a
    mounted repository's filesystem is frozen only for that instant, so a running repository is
    copied crash-consistent) and streams it over SSH into the target's C(renet transfer serve).
    The image is never opened; what travels and what lands on the target is the LUKS ciphertext.
  - Incremental. When both hosts hold a snapshot of the repository from an earlier copy (in
    either direction), only the difference from it is sent (C(btrfs send -p)), so its cost follows
    the change, not the repository's size. Otherwise the image is sent whole.
  - Verified. The target's byte count and CRC-32 of the stream must equal the source's (SSH's MAC
    guards the stream against tampering, the stream carries its own checksums per command); a
    copy that does not match is removed there.
  - Resumable. An interrupted copy (the transfer killed, the target powered off) leaves nothing
    on the target that counts; its half-received stream is removed at the next run, which
    starts again from the newest common snapshot. The source's new snapshot is removed too.
  - On the target the repository keeps its name, GUID, key and secrets (opened here and sealed
    again under the target's store key, never shown); its networkId when that is free there,
    otherwise a new one (reported in RV(target)). It arrives closed.
  - Refused, with nothing changed, when the target holds another repository of that name, when
    the copy there is open, and when the copy there was changed since it was received (unless
    O(force=true)). Unchanged since the last copy (both sides), nothing is sent (C(changed=false)).
  - A CRIU checkpoint made by C(repo down --checkpoint) lives in the image and travels with it;
    C(repo up) on the target restores it (playbook C(repo_migrate.yml)).
  - The SSH trust (the source's transfer key, allowed to run only C(renet transfer serve) on the
    target, and the target's host key) is set up by the playbooks (C(repo_push.yml)).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
options:
  name:
    description: The repository to copy.
    type: str
    required: true
  to:
    description: The target host's address as the source reaches it (host name or IP address).
    type: str
    required: true
  port:
    description: The target's SSH port.
    type: int
    default: 22
  user:
    description: The SSH user on the target (its forced command runs as that user; root).
    type: str
    default: root
  identity:
    description: This host's transfer key (the playbooks make it).
    type: path
    default: /var/lib/rediacc/transfer/id_ed25519
  known_hosts:
    description: The known_hosts file holding the target's host key (never learnt on first use).
    type: path
    default: /var/lib/rediacc/transfer/known_hosts
  bandwidth:
    description:
      - Limit of the stream in bytes per second, with a unit (C(10M), C(1.5G), C(512KiB)); at
        least 64 KiB/s. Unset, as fast as the link goes.
    type: str
  force:
    description: Replace a copy on the target that was changed there since it was received.
    type: bool
    default: false
seealso:
  - module: lockbox.fleet.btrfs_fork
"""

EXAMPLES = r"""
- name: Copy marketing to the standby host, at most 50 MB/s
  lockbox.fleet.repo_transfer:
    name: marketing
    to: standby.example.net
    bandwidth: 50M
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
transfer:
  description:
    - C(mode) full, delta or none (nothing changed); C(base) the common snapshot of a delta;
      C(snapshot) the new one; C(bytes), C(seconds), C(rate) (bytes/s), C(crc32) of the stream,
      C(line) a progress line.
  returned: always
  type: dict
  sample: {"mode": "delta", "base": "20261125T130102Z-1f2e3d", "snapshot": "20261125T131500Z-a1b2c3",
           "bytes": 52637114, "seconds": 5.2, "rate": 10122521, "crc32": "9a1c0b7e"}
target:
  description: C(host) (its host name); after a copy C(network_id), C(network_id_kept), C(subnet), C(replaced).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_transfer as _repo_transfer
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            to=dict(type="str", required=True),
            port=dict(type="int", default=22),
            user=dict(type="str", default="root"),
            identity=dict(type="path", default="/var/lib/rediacc/transfer/id_ed25519"),
            known_hosts=dict(type="path", default="/var/lib/rediacc/transfer/known_hosts"),
            bandwidth=dict(type="str"),
            force=dict(type="bool", default=False),
            **_module.LAYOUT_ARGS),
        supports_check_mode=True,
    )
    _module.run(module, _repo_transfer.run)


if __name__ == "__main__":
    main()
