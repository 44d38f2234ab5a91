# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nftables: the host's TCP/UDP forwards to repository services (rediacc.tcp_ports/udp_ports), and the
Hub's activity counters on its direct routes.

Why DNAT in the kernel rather than a proxy listening on the host port: a listener on
0.0.0.0:<port> would keep the service itself from binding <service IP>:<port> (Linux
refuses a specific bind beside a wildcard listener). DNAT needs no socket at all.
Packets that arrive on a real interface for <port> go to <service IP>:<port>; since a
loopback destination is only routable from outside with ``route_localnet``, that switch
is turned on and every other packet from outside to 127.0.0.0/8 is dropped, so nothing
but the declared ports becomes reachable.
"""

from __future__ import annotations

import json
import os

from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, write_atomic

TABLE = "lockbox_forward"
APPLIED = "/run/rediacc/forward.nft"
ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/all/route_localnet"


def forward_ruleset(forwards):
    """The whole table, replaced in one nft transaction (create, delete, define)."""
    lines = ["table ip %s" % TABLE, "delete table ip %s" % TABLE, "table ip %s {" % TABLE,
             "\tchain prerouting {", "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
    lines += ['\t\tiifname != "lo" %s dport %d dnat to %s:%d' % (f["protocol"], f["port"], f["address"], f["port"])
              for f in forwards]
    lines += ["\t}", "\tchain outside_to_loopback {",
              "\t\ttype filter hook prerouting priority filter; policy accept;",
              # Only what a forward rewrote may reach loopback from outside.
              '\t\tiifname != "lo" ip daddr 127.0.0.0/8 ct status dnat accept',
              '\t\tiifname != "lo" ip daddr 127.0.0.0/8 drop',
              "\t}", "}", ""]
    return "\n".join(lines)


def apply_forwards(runner, ruleset, applied=APPLIED, route_localnet=ROUTE_LOCALNET):
    """Load ``ruleset`` unless it is what was loaded last (since boot); True when it was loaded."""
    if read_text(applied) == ruleset:
        return False
    load(runner, ruleset)
    if "dnat to" in ruleset and os.path.exists(route_localnet):
        with open(route_localnet, "w") as handle:
            handle.write("1\n")
    write_atomic(applied, ruleset)
    return True


# The Hub's direct routes: what a user's browser sends straight to their environment (the
# router's connections to the environment's route ports) is counted here, for the idle rule.
ACTIVITY_TABLE = "lockbox_hub_activity"


def activity_ruleset(watched):
    """The whole activity table for ``watched`` ({user: (address, ports)}), replaced in one transaction.

    Only segments with PSH count: every write of data ends with one, a bare ACK (the browser
    acknowledging what a forgotten tab receives) never has it.
    """
    lines = ["table inet %s" % ACTIVITY_TABLE, "delete table inet %s" % ACTIVITY_TABLE,
             "table inet %s {" % ACTIVITY_TABLE, "\tchain output {",
             "\t\ttype filter hook output priority filter; policy accept;"]
    for user, (address, ports) in sorted(watched.items()):
        lines.append('\t\tip daddr %s tcp dport { %s } tcp flags & psh == psh counter comment "%s"'
                     % (address, ", ".join(str(p) for p in sorted(ports)), user))
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


def load(runner, ruleset):
    """One nft transaction: all of ``ruleset`` or nothing."""
    runner.run(["nft", "-f", "-"], stdin=ruleset.encode())


def remove_activity(runner):
    """The activity table gone (nothing is counted); a missing table is no error (created, then deleted)."""
    load(runner, "table inet %s\ndelete table inet %s\n" % (ACTIVITY_TABLE, ACTIVITY_TABLE))


def parse_activity(text):
    """{user: packets} from ``nft -j list table inet lockbox_hub_activity``."""
    counts = {}
    for item in json.loads(text).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expression in rule.get("expr", []):
            if "counter" in expression:
                counts[rule["comment"]] = int(expression["counter"].get("packets", 0))
    return counts


def activity_counts(runner):
    """Packets counted per user since the table was last loaded ({} when there is no table)."""
    result = runner.run(["nft", "-j", "list", "table", "inet", ACTIVITY_TABLE], ok_rcs=(0, 1))
    return parse_activity(result.stdout) if result.rc == 0 else {}
