# SPDX-License-Identifier: GPL-3.0-or-later
"""Pack the collection's module_utils into one zip for the host runtime (renet).

Runs on the control node. The zip is byte-for-byte the same for the same sources (fixed
timestamps, sorted entries), so copying it to hosts is idempotent.
Usage: pack_runtime.py MODULE_UTILS_DIR OUTPUT_ZIP
The collection version it was packed from travels inside (renet --version prints it) and is
printed on stdout for the role to compare with what a host runs.
"""

import json
import os
import re
import sys
import zipfile

PACKAGE = "ansible_collections/lockbox/fleet/plugins/module_utils"
STAMP = (2020, 1, 1, 0, 0, 0)
VERSION = "unknown"


def main(source, output):
    """Every .py file under ``source`` (subpackages included), as the package tree Python imports."""
    found = []
    for directory, subdirs, files in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith((".", "__pycache__")))
        relative = os.path.relpath(directory, source)
        found += [os.path.normpath(os.path.join(relative, n)) for n in files if n.endswith(".py")]
    temporary = output + ".tmp"
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        parts = PACKAGE.split("/")
        for depth in range(1, len(parts) + 1):
            archive.writestr(zipfile.ZipInfo("/".join(parts[:depth]) + "/__init__.py", STAMP), "")
        for name in sorted(found):
            if name == "__init__.py":
                continue
            with open(os.path.join(source, name), "rb") as handle:
                info = zipfile.ZipInfo("%s/%s" % (PACKAGE, name), STAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, handle.read())
        archive.writestr(zipfile.ZipInfo("%s/_front/VERSION" % PACKAGE, STAMP), VERSION + "\n")
    os.replace(temporary, output)


def collection_version(source):
    """The version of the collection holding ``source``: MANIFEST.json when installed, else galaxy.yml."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(source)))
    try:
        with open(os.path.join(root, "MANIFEST.json")) as handle:
            return json.load(handle)["collection_info"]["version"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(root, "galaxy.yml")) as handle:
            found = re.search(r"^version:\s*['\"]?([^'\"\s]+)", handle.read(), re.M)
        return found.group(1) if found else "unknown"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    VERSION = collection_version(sys.argv[1])
    main(sys.argv[1], sys.argv[2])
    print(VERSION)
