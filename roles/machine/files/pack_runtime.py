"""Pack the collection's module_utils into one zip for the host runtime (renet).

Runs on the control node. The zip is byte-for-byte the same for the same sources (fixed
timestamps, sorted entries), so copying it to hosts is idempotent.
Usage: pack_runtime.py MODULE_UTILS_DIR OUTPUT_ZIP
"""

import os
import sys
import zipfile

PACKAGE = "ansible_collections/lockbox/fleet/plugins/module_utils"
STAMP = (2020, 1, 1, 0, 0, 0)


def main(source, output):
    names = sorted(n for n in os.listdir(source) if n.endswith(".py"))
    temporary = output + ".tmp"
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        parts = PACKAGE.split("/")
        for depth in range(1, len(parts) + 1):
            archive.writestr(zipfile.ZipInfo("/".join(parts[:depth]) + "/__init__.py", STAMP), "")
        for name in names:
            if name == "__init__.py":
                continue
            with open(os.path.join(source, name), "rb") as handle:
                info = zipfile.ZipInfo("%s/%s" % (PACKAGE, name), STAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, handle.read())
    os.replace(temporary, output)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
