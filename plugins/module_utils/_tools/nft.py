# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nftables: the host's TCP/UDP forwards to repository services (rediacc.tcp_ports/udp_ports).

Why DNAT in the kernel rather than a proxy listening on the host port: a listener on
0.0.0.0:<port> would keep the service itself from binding <service IP>:<port> (Linux
refuses a specific bind beside a wildcard listener). DNAT needs no socket at all.
Packets that arrive on a real interface for <port> go to <service IP>:<port>; since a
loopback destination is only routable from outside with ``route_localnet``, that switch
is turned on and every other packet from outside to 127.0.0.0/8 is dropped, so nothing
but the declared ports becomes reachable.
"""

from __future__ import annotations

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
    runner.run(["nft", "-f", "-"], stdin=ruleset.encode())
    if "dnat to" in ruleset and os.path.exists(route_localnet):
        with open(route_localnet, "w") as handle:
            handle.write("1\n")
    write_atomic(applied, ruleset)
    return True
