# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_autostart: a repository comes back after the host boots.

The mark lives in the repository's host record (``autostart: {"key_file": path}``), with the
key file the operator chose to place: root-owned, mode 0600 or stricter, and it must open the
repository's LUKS header when it is set. At boot ``rediacc-autostart.service`` runs
``renet reconcile --boot`` (lockbox.fleet.machine_status), which opens, mounts and brings up
every marked repository; the others stay closed.
"""

from __future__ import annotations

import os

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup

FIELD = "autostart"


def converge(runner, layout, name, *, state, key_file=None, check_mode=False):
    """Mark (``present``) or unmark (``absent``) repository ``name`` for autostart."""
    if state not in ("present", "absent"):
        raise InvalidInput("state must be present or absent, got %r" % (state,))
    record = _state.ready_record(layout.state_dir, name)
    current = record.get(FIELD)
    wanted = None
    if state == "present":
        if not key_file:
            raise InvalidInput("autostart needs key_file: a root-only file on the host whose content opens %s" % name)
        key = _repository.key_from(key_file=key_file)  # absolute, regular, root-owned, 0600 or stricter
        _cryptsetup.check_key(runner, layout.image(record["guid"]), key.material)
        wanted = {"key_file": os.path.normpath(key_file)}
    if current == wanted:
        return {"changed": False, "actions": [], "autostart": current}
    actions = [{"action": "mark", "detail": "start %s at boot with the key in %s" % (name, wanted["key_file"])}
               if wanted else {"action": "unmark", "detail": "leave %s closed at boot" % name}]
    if not check_mode:
        with _state.HostState(layout.state_dir) as host:
            fresh = host.get(name)
            if wanted:
                fresh[FIELD] = wanted
            else:
                fresh.pop(FIELD, None)
            host.put(fresh)
    return {"changed": True, "actions": actions, "autostart": wanted,
            "diff": {"before": {FIELD: current}, "after": {FIELD: wanted}}}


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_autostart."""
    return converge(runner, _repository.layout_of(params), params["name"], state=params["state"],
                    key_file=params.get("key_file"), check_mode=check_mode)
