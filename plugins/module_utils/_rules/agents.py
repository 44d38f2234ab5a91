# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Agents work on forks: who is an agent, and when an agent may touch a grand repository.

An agent is a process with an agent's marker in its environment or in the environment any
of its ancestors started with (a child that unsets the marker, or runs ``env -i``, still
descends from the agent). There is no switch to turn this off.

An agent is refused every mutating or shell operation on a grand (non-fork) repository.
``REDIACC_ALLOW_GRAND_REPO=<name>[,<name>]`` lets it through for the repositories named,
only when the override was in the environment the topmost agent process started with: set
by the user before the agent started, never introduced by the agent or its children. When
the ancestry cannot be read to its top, nothing is honoured.
"""

from __future__ import annotations

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

# Set by the agents themselves (Claude Code, Gemini CLI, Copilot CLI, Cursor, Codex) or by a
# user who wants a process tree treated as an agent.
MARKERS = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "REDIACC_AGENT", "GEMINI_CLI", "COPILOT_CLI",
           "CURSOR_TRACE_ID", "CURSOR_AGENT", "CODEX_SANDBOX")
OVERRIDE = "REDIACC_ALLOW_GRAND_REPO"


class AgentRefused(LockboxError):
    """An agent asked for an operation on a grand repository; ``marker`` is the one that gave it away."""

    def __init__(self, msg, marker):
        super().__init__(msg)
        self.marker = marker


def marker_of(environ):
    """The first agent marker set (non-empty) in ``environ``, or None."""
    return next((m for m in MARKERS if (environ or {}).get(m)), None)


def allowed_names(value):
    return {n.strip() for n in (value or "").split(",") if n.strip()}


def check(repo_name, is_fork, environ, ancestry, operation):
    """Raise AgentRefused when an agent may not do ``operation`` on repository ``repo_name``."""
    chain = [environ] + [env for _pid, env in ancestry]  # ourselves, then our parent, up to the top
    marked = [i for i, env in enumerate(chain) if env is not None and marker_of(env)]
    if not marked or is_fork:
        return
    root = marked[-1]  # the topmost agent process
    complete = all(env is not None for env in chain)
    marker = marker_of(chain[root])
    grand = "%r is a grand (production) repository." % repo_name
    if complete and repo_name in allowed_names(chain[root].get(OVERRIDE)):
        return
    introduced = any(repo_name in allowed_names((env or {}).get(OVERRIDE)) for env in chain[:root + 1])
    if introduced and complete:
        raise AgentRefused("%s Agent-initiated overrides are not accepted. Do not attempt to set %s. Only the user "
                           "can authorize this before the agent starts." % (grand, OVERRIDE), marker)
    unverified = "" if complete else (" (the process ancestry could not be read to its top, so %s cannot be "
                                      "verified and is not honoured)" % OVERRIDE)
    raise AgentRefused("%s Agents cannot modify grand repositories directly (refused: %s)%s. Grand repositories "
                       "contain production data. Use a fork instead. Forks are safe, isolated sandbox copies."
                       % (grand, operation, unverified), marker)
