#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Alice's environment after the Hub hibernated it for idling (molecule/hub side effect): the
# checkpoint is in her root-only data-root, her daemon is stopped, her next login resumes the
# container with the token its shell held in memory; then resumes from a damaged checkpoint
# until the third failure in a row, after which the Hub makes her container anew.
# Usage: hibernation.sh WORKSPACE_DIR HUB_ADDRESS HUB_PORT TOKEN_BEFORE
set -u
workspaces=$1 address=$2 port=$3 token=$4
here=$(dirname "$0")
id=$(cat "$workspaces/alice-docker/.networkid")
alice="unix:///var/run/rediacc/docker-$id.sock"
checkpoint="$workspaces/alice-docker/.rediacc/checkpoint/hub-hibernate"
log=/var/log/rediacc/hub/alice.log
# Only this run's lines count (audit logs outlive an uninstall: the guest may have run this before).
since=$(grep -n '"action":"idle-stop"' "$log" | tail -n 1 | cut -d: -f1)
counts() {  # ACTION...: how often each was recorded since this run's idle stop
  local pattern
  pattern=$(IFS='|'; echo "$*")
  tail -n "+$since" "$log" | grep -oE "\"action\":\"($pattern)\"" | cut -d'"' -f4 | sort | uniq -c \
    | awk '{print $2, $1}'
}
resume() {  # alice logs in again; prints the page she gets
  python3 "$here/hub_check.py" "$address" "$port" alice \
    | python3 -c 'import json, sys; a = json.load(sys.stdin)["alice"]; print(a["error"], a["page"]["status"], a["page"]["body"])'
}
echo "== hibernated"
systemctl is-active "rediacc-docker-$id.service"
stat -c '%a %U' "$checkpoint" "$workspaces/alice-docker/.rediacc/checkpoint"
find "$checkpoint/hub-alice" -name 'pages-*.img' | wc -l
cat "$workspaces/alice/pre_dump"
echo "== resumed"
resume
docker -H "$alice" exec hub-alice sh -c 'rm -f /workspace/token-now; sleep 3; cat /workspace/token-now' | grep -cx "$token"
cat "$workspaces/alice/post_restore"
test -e "$checkpoint"; echo "checkpoint left: $?"
counts hibernated resumed
first=$(docker -H "$alice" inspect -f '{{.Id}}' hub-alice)
echo "== damaged"
# Round 1 counts its failure (0 -> 1, the same container kept). Round 2 starts from a recorded
# count of 2, as two failed resumes leave it (one round less under TCG, ~140 s), so its failure
# is the third in a row: the Hub makes her container anew and resets the count.
for round in 1 2; do
  if [ "$round" = 2 ]; then
    printf '{"failures_in_a_row": 2}\n' > "$workspaces/alice-docker/.rediacc/hub-criu.json"
  fi
  renet hub hibernate alice | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])'
  for image in "$checkpoint"/hub-alice/core-*.img; do printf 'x' >> "$image"; done
  resume
  docker -H "$alice" inspect -f '{{.Id}}' hub-alice | sed "s/^$first\$/same container/; s/^[0-9a-f]\{64\}\$/new container/"
  cat "$workspaces/alice-docker/.rediacc/hub-criu.json"
  echo "round $round done"
done
counts restore-failed criu-recreate container-created
