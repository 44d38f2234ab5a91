# SPDX-License-Identifier: GPL-3.0-or-later
"""scripts/molecule_suite.py: what a failed lane reports as the cause (CI shows only the end of the output)."""

import importlib.util
import io
import threading
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "molecule_suite.py"
spec = importlib.util.spec_from_file_location("molecule_suite", SCRIPT)
molecule_suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(molecule_suite)

# A lane's output as Ansible and Molecule print it: three failures a test expects (two rescued,
# one ignored), then the one that failed the lane and Molecule's error.
OUTPUT = """\
TASK [lockbox.fleet.backup : Check that each copy_to is another host of the inventory] ***
fatal: [fleet-a]: FAILED! =>
    msg: 'renet: schedule ''Mon..Fry 25:00'' is not a systemd calendar expression'
TASK [It failed naming what is wrong] ******************************************
ok: [fleet-a]
TASK [lockbox.fleet.backup : Check that each copy_to is another host of the inventory] ***
fatal: [fleet-a]: FAILED! =>
    msg: 'renet: backup strategy name ''../../tmp/evil'': 1-32 of a-z 0-9 _ -'
TASK [It failed naming what is wrong] ******************************************
ok: [fleet-a]
TASK [Probe a port that is closed] *********************************************
fatal: [fleet-a]: FAILED! => {"changed": false, "msg": "connection refused"}
...ignoring
TASK [No backup and no backup timer is left] ***********************************
fatal: [fleet-a]: FAILED! =>
    stdout: '1'
PLAY RECAP *********************************************************************
fleet-a                    : ok=3    changed=0    unreachable=0    failed=1    skipped=0    rescued=1    ignored=1
CRITICAL Ansible return code was 2, command was: ansible-playbook cleanup.yml
"""


def lane_after(output, rc):
    lane = molecule_suite.Lane("scenarios", "fleet-a", ["backup"], Path("/nonexistent"), alone=False)
    lock, log = threading.Lock(), io.StringIO()
    for line in output.splitlines(keepends=True):
        lane._line(line, lock, log)
    lane.rc = rc
    return lane


def test_the_report_ends_with_the_failure_that_failed_the_lane(capsys):
    report = molecule_suite.failure_report("scenarios", lane_after(OUTPUT, 2))
    capsys.readouterr()
    lines = report.splitlines()
    assert lines[0].startswith("===== what failed in molecule: lane fleet-a of phase scenarios, rc=2")
    assert lines[-1] == "CRITICAL Ansible return code was 2, command was: ansible-playbook cleanup.yml"
    assert "TASK [No backup and no backup timer is left] ***********************************" in lines
    assert "    stdout: '1'" in lines
    # The ignored failure is no cause; the rescued one is still shown (Ansible prints it alike).
    assert "connection refused" not in report
    assert "Mon..Fry" not in report
    assert lines.count("-- fleet-a") == 3


def test_a_lane_that_printed_no_failure_says_where_its_log_is(capsys):
    report = molecule_suite.failure_report("scenarios", lane_after("PLAY RECAP ****\n", 1))
    capsys.readouterr()
    assert report.splitlines()[1] == "(no failed task in its output: see %s)" % (
        molecule_suite.LOGS / "molecule-scenarios-fleet-a.log")
