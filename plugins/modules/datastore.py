#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: datastore
short_description: Manage the BTRFS datastore that holds a host's repositories
version_added: 0.1.0
description:
  - Creates, grows and removes the BTRFS datastore of a lockbox host. The datastore is a
    fixed-size pool file (loop-mounted) or an existing block device, formatted as BTRFS
    and mounted at O(path) by a systemd mount unit that is enabled, so it is mounted
    again at boot.
  - Growing is online (pool file, loop device and filesystem grow while mounted).
    Shrinking is refused.
  - Every step is planned from what is observed on the host, so a run interrupted half
    way is completed by the next run. In check mode the planned actions are returned.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
options:
  path:
    description:
      - Where the datastore is mounted. Must be absolute and outside system trees such as
        V(/proc), V(/sys), V(/dev), V(/etc) and V(/usr).
    type: path
    default: /mnt/rediacc
  state:
    description:
      - V(present) creates, formats, mounts and grows the datastore as needed.
      - V(absent) unmounts it, removes its unit and deletes the pool file (or wipes the
        BTRFS signature of the device). Needs O(force=true) whenever there is anything to
        remove. Re-running it on a host without a datastore changes nothing.
    type: str
    choices: [present, absent]
    default: present
  pool_file:
    description:
      - The pool file that holds the datastore. Created with O(size) and fully allocated.
      - Mutually exclusive with O(device). Used when O(device) is not set.
    type: path
    default: /var/lib/rediacc/datastore.pool
  device:
    description:
      - An existing block device to hold the datastore instead of a pool file. It is
        formatted only if it carries no filesystem signature; a device with another
        filesystem is refused.
    type: path
  size:
    description:
      - Size of the pool file, as bytes or with a unit (V(10G), V(512MiB), V(1.5TB)). A
        bare unit letter or C(iB) suffix is binary (1024-based), a C(B) suffix decimal.
      - Rounded up to a whole MiB. At least 256 MiB. Required to create a pool file;
        a larger value grows the datastore online; a smaller one is refused.
      - Not used with O(device); the filesystem always fills the device and grows with it.
    type: str
  force:
    description:
      - Needed for O(state=absent) to destroy a datastore and everything in it.
    type: bool
    default: false
notes:
  - The unit is named after O(path), for example C(mnt-rediacc.mount).
  - Free space is the BTRFS estimate (C(btrfs filesystem usage)), not a C(df) guess.
seealso:
  - name: BTRFS resize
    description: How a mounted BTRFS filesystem is grown.
    link: https://btrfs.readthedocs.io/en/latest/btrfs-filesystem.html
"""

EXAMPLES = r"""
- name: Create a 20 GiB datastore at the default path
  lockbox.fleet.datastore:
    size: 20G

- name: Grow it online to 50 GiB
  lockbox.fleet.datastore:
    size: 50G

- name: Use a dedicated disk instead of a pool file
  lockbox.fleet.datastore:
    path: /mnt/rediacc
    device: /dev/vdb

- name: Show what removing the datastore would do
  lockbox.fleet.datastore:
    state: absent
    force: true
  check_mode: true
  register: removal_plan

- name: Remove the datastore and everything in it
  lockbox.fleet.datastore:
    state: absent
    force: true
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create-pool-file", "detail": "allocate 20 GiB at /var/lib/rediacc/datastore.pool"}]
datastore:
  description: The datastore after the run (predicted in check mode).
  returned: always
  type: dict
  contains:
    path:
      description: The mount point.
      type: str
      sample: /mnt/rediacc
    unit:
      description: The systemd mount unit that mounts the datastore at boot.
      type: str
      sample: mnt-rediacc.mount
    backing:
      description: The pool file or device behind the datastore.
      type: str
      sample: /var/lib/rediacc/datastore.pool
    state:
      description: V(present) when a BTRFS datastore exists, else V(absent).
      type: str
      sample: present
    mounted:
      description: Whether the datastore is mounted at O(path).
      type: bool
      sample: true
    unit_enabled:
      description: Whether the mount unit is enabled for boot.
      type: bool
      sample: true
    size:
      description: Size of the filesystem in bytes (the planned size in check mode).
      type: int
      sample: 21474836480
    free:
      description: Estimated free bytes reported by BTRFS; null in check mode or when not mounted.
      type: int
      sample: 21340000256
    used:
      description: Bytes used in the filesystem; null in check mode or when not mounted.
      type: int
      sample: 294912
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import datastore as _datastore
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module

ARGUMENT_SPEC = dict(
    path=dict(type="path", default=_datastore.DEFAULT_PATH),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    pool_file=dict(type="path", default=_datastore.DEFAULT_POOL_FILE),
    device=dict(type="path"),
    size=dict(type="str"),
    force=dict(type="bool", default=False),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    _module.run(module, _datastore.run)


if __name__ == "__main__":
    main()
