# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_info: the facts of every repository of a host."""

from __future__ import annotations

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state


def info(runner, layout, name=None):
    host = _state.HostState(layout.state_dir)
    records = host.all()
    if name is not None:
        _state.check_name(name)
        if not any(r["name"] == name for r in records):
            raise InvalidInput("unknown repository %r" % name)
    return [_repository.describe(runner, layout, r, records) for r in records if name is None or r["name"] == name]


def run(runner, params, check_mode=False):  # facts only: check mode changes nothing here
    """Entry point of lockbox.fleet.repo_info."""
    return {"changed": False, "repositories": info(runner, _repository.layout_of(params), params.get("name"))}
