# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint names and the order services are restored in: pure rules, no host state."""

from __future__ import annotations

import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput

# A checkpoint name is one directory under <mount>/.rediacc/checkpoint/: letters, digits and
# . _ : - after a letter or digit, so it can never be '.', '..', hidden, or hold a '/'.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
# Names lockbox itself gives (repo down --checkpoint, a fork with checkpoint): users may
# restore or delete them, but creating one by hand would be mistaken for the automatic one.
DOWN = "repo-down"
FORK_PREFIX = "fork-"


def check_name(name, creating=False):
    """``name`` if it is a valid checkpoint name, else InvalidInput saying what is allowed."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput("checkpoint name %r is not allowed: use 1-100 letters, digits and . _ : - starting "
                           "with a letter or digit (for example daily-backup, v1.0.0, ckpt-2026-11-24T10:00)"
                           % (name,))
    if creating and (name == DOWN or name.startswith(FORK_PREFIX)):
        raise InvalidInput("checkpoint name %r is reserved for lockbox's own checkpoints (%s, %s<tag>)"
                           % (name, DOWN, FORK_PREFIX))
    return name


def is_labelled(labels):
    """The service asked to be checkpointed (label rediacc.checkpoint=true)."""
    return str((labels or {}).get("rediacc.checkpoint", "")).strip().lower() == "true"


def restore_order(services, depends_on):
    """``services`` ordered so that each comes after those it depends on (compose's depends_on).

    ``depends_on``: service -> names it depends on (any others are ignored here: they are
    started before any restore). A cycle is an error compose itself would report.
    """
    wanted = list(services)
    done, order = set(), []

    def visit(name, path):
        if name in done:
            return
        if name in path:
            raise InvalidInput("depends_on forms a cycle: %s" % " -> ".join([*path, name]))
        for needed in sorted(depends_on.get(name) or ()):
            if needed in wanted:
                visit(needed, [*path, name])
        done.add(name)
        order.append(name)

    for name in wanted:
        visit(name, [])
    return order
