# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for ansible-test's pip bootstrap script.

ansible-test fetches get-pip.py from ci-files.testing.ansible.com, which this workplace
cannot reach (only the package registries are). scripts/setup puts this file where
ansible-test caches that script: it installs pip from the interpreter's own ensurepip,
then the packages ansible-test asked for (pip==<version>, …) from PyPI.

ansible-test runs pip with PIP_CONFIG_FILE=/dev/null and a scrubbed environment, so pip
would ignore the host's CA bundle (needed where TLS is re-signed by a proxy). A .pth
line in the new venv points pip at the system bundle for every later install too.
"""

import ensurepip
import os
import site
import subprocess
import sys

# get-pip.py options that plain `pip install` does not know.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

if os.path.exists(SYSTEM_CA_BUNDLE) and sys.prefix != sys.base_prefix:
    pth = os.path.join(site.getsitepackages()[0], "lockbox-system-ca.pth")
    with open(pth, "w") as handle:
        handle.write("import os; os.environ.setdefault('PIP_CERT', %r)\n" % SYSTEM_CA_BUNDLE)
    os.environ.setdefault("PIP_CERT", SYSTEM_CA_BUNDLE)

ensurepip.bootstrap()
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
