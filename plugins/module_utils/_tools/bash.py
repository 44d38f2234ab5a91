# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bash: source a Rediaccfile in its directory and call one of its functions, as bash would."""

from __future__ import annotations

import re

_FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def call_function(runner, directory, function, env, file_name="Rediaccfile"):
    """``source ./<file_name>`` then ``function`` (no ``set -e``: the function's status decides)."""
    if not _FUNCTION.fullmatch(function):
        raise ValueError("not a shell function name: %r" % function)
    script = ('source ./%s\nif declare -F %s >/dev/null; then %s; else echo "no %s()"; fi'
              % (file_name, function, function, function))
    return runner.run(["bash", "-c", script], env=env, cwd=directory)
