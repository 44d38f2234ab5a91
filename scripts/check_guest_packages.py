# SPDX-License-Identifier: GPL-3.0-or-later
"""Fail when the test-guest image carries a package that no role installs.

A package baked into the image would make a role's missing install step invisible in every
guest test. Role packages are read from the roles themselves: list variables named
*_packages in defaults/main.yml and the names of ansible.builtin.apt tasks.
"""

import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = "# -- roles:"


def image_packages():
    lines = (ROOT / "tools/testguest/packages.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    return [line.strip() for line in lines[start + 1:] if line.strip() and not line.startswith("#")]


def role_packages():
    found = set()
    for defaults in ROOT.glob("roles/*/defaults/main.yml"):
        for key, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if key.endswith("_packages") and isinstance(value, list):
                found.update(value)
    for tasks in ROOT.glob("roles/*/tasks/*.yml"):
        for task in yaml.safe_load(tasks.read_text()) or []:
            apt = task.get("ansible.builtin.apt") if isinstance(task, dict) else None
            names = apt.get("name") if isinstance(apt, dict) else None
            if isinstance(names, str) and "{{" not in names:
                found.add(names)
            elif isinstance(names, list):
                found.update(n for n in names if "{{" not in n)
    return found


def main():
    missing = sorted(set(image_packages()) - role_packages())
    if missing:
        print("check-guest-packages: the test image has %s, which no role installs: add them to a role "
              "(or above the roles line if any Debian host has them)" % ", ".join(missing), file=sys.stderr)
        return 1
    print("check-guest-packages: every role package of the test image is installed by a role")
    return 0


if __name__ == "__main__":
    sys.exit(main())
