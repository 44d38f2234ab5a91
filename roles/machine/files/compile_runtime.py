# SPDX-License-Identifier: GPL-3.0-or-later
"""Compile the host runtime's zip for the Python of the host it runs on.

Python cannot cache bytecode for code imported from a zip, so renet (run for every compose
call and Rediaccfile step) would compile its modules at every start: about a second on a
small host. This writes a second zip holding the same modules as bytecode for this
interpreter (unchecked hash-based .pyc, PEP 552) and the data files unchanged.
Usage: compile_runtime.py SOURCE_ZIP COMPILED_ZIP
Prints "compiled" when it wrote COMPILED_ZIP, "unchanged" when that already matched
SOURCE_ZIP and this interpreter (the zip's comment records both).
"""

import hashlib
import importlib.util
import marshal
import os
import sys
import zipfile


def main(source, output):
    with open(source, "rb") as handle:
        stamp = ("%s %s" % (hashlib.sha256(handle.read()).hexdigest(),
                            importlib.util.MAGIC_NUMBER.hex())).encode()
    try:
        with zipfile.ZipFile(output) as existing:
            if existing.comment == stamp:
                print("unchanged")
                return 0
    except (OSError, zipfile.BadZipFile):
        pass
    temporary = output + ".tmp"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as compiled:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith(".py"):
                code = compile(data, info.filename, "exec", dont_inherit=True)
                # flags=1: hash-based and unchecked, so no source or timestamp is looked at.
                pyc = importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + \
                    importlib.util.source_hash(data) + marshal.dumps(code)
                compiled.writestr(zipfile.ZipInfo(info.filename + "c", info.date_time), pyc)
            else:
                compiled.writestr(zipfile.ZipInfo(info.filename, info.date_time), data)
        compiled.comment = stamp
    os.chmod(temporary, 0o644)
    os.replace(temporary, output)
    print("compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
