#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_prune
short_description: Remove what interrupted repository operations left behind
version_added: 0.1.0
description:
  - Finds records of creates, forks and deletes that did not finish, subvolumes no record
    owns, and device-mapper mappings of ours without a repository, and removes them
    (unmount, close, detach, wipe keyslots, delete subvolume, forget the record).
  - A parent left frozen by an interrupted fork is thawed.
  - The dockerd units and configurations, slices and loopback guard programs of networkIds no
    repository holds (left by a repository deleted by hand, or an interrupted operation) are
    stopped and removed; a daemon counts only when it serves a mount of this datastore whose
    GUID no record knows, and Hub users' daemons are never touched.
  - Transfer snapshots and backups of repositories no record knows are deleted once nothing was
    written in them for O(snapshot_grace) seconds (a copy being received has no record yet).
  - Repositories that are ready are never touched. In check mode the list is returned.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
options:
  snapshot_grace:
    description:
      - Seconds a snapshot directory of an unknown repository must have been left untouched
        before it is deleted.
    type: int
    default: 3600
attributes:
  diff_mode:
    description: Changes nothing that a diff could show.
    support: none
"""

EXAMPLES = r"""
- name: Show what would be cleaned
  lockbox.fleet.repo_prune:
  check_mode: true

- name: Clean up
  lockbox.fleet.repo_prune:
"""

RETURN = r"""
actions:
  description: The cleanup steps planned (check mode) or taken.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_prune as _repo_prune
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    spec = dict(snapshot_grace=dict(type="int", default=_repo_prune.SNAPSHOT_GRACE), **_module.LAYOUT_ARGS)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    _module.run(module, _repo_prune.run)


if __name__ == "__main__":
    main()
