#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What a guest shows of the Hub's users alice and bob (molecule/hub side effect): per user's
# networkId the daemon's state, the slice's limits and the daemon's containers; the
# workspaces' owners; whether alice's container reaches bob's environment or the Hub.
# Usage: inspect.sh WORKSPACE_DIR BOB_ADDRESS HUB_ADDRESS:PORT
set -u
workspaces=$1 bob=$2 hub=$3
for user in alice bob; do
  id=$(cat "$workspaces/$user-docker/.networkid")
  echo "== $id"
  systemctl is-active "rediacc-docker-$id.service"
  systemctl show -P CPUQuotaPerSecUSec "rediacc-$id.slice"
  systemctl show -P MemoryMax "rediacc-$id.slice"
  docker -H "unix:///var/run/rediacc/docker-$id.sock" ps --format '{{.Names}}'
done
echo "== workspaces"
stat -c '%n %u:%g %a' "$workspaces/alice" "$workspaces/bob"
alice="unix:///var/run/rediacc/docker-$(cat "$workspaces/alice-docker/.networkid").sock"
echo "== alice reaches bob"
docker -H "$alice" exec hub-alice wget -q -T 5 -O - "http://$bob:8080/" 2>&1; echo "rc=$?"
echo "== alice reaches the hub"
docker -H "$alice" exec hub-alice wget -q -T 5 -O - "http://$hub/_hub/health" 2>&1; echo "rc=$?"
echo "== gate"
# What alice's container sees as /var/run/docker.sock (through its mount namespace): her
# daemon, judged; the docker CLI is the guest's, the container has none.
gate="unix:///proc/$(docker -H "$alice" inspect -f '{{.State.Pid}}' hub-alice)/root/var/run/docker.sock"
stat -c '%a %U' /run/rediacc/hub/users/alice/docker.sock
docker -H "$alice" exec hub-alice sh -c 'echo "$DOCKER_HOST"'
docker -H "$gate" ps -a --format '{{.Names}}'
docker -H "$gate" run --rm --privileged lockbox-test/hubenv:1 true 2>&1 | grep -o 'gives the container the whole host'
docker -H "$gate" run --rm -v /etc:/x lockbox-test/hubenv:1 true 2>&1 | grep -o 'outside the repository.s mount'
docker -H "$gate" run --rm --network none -v "$workspaces/alice:/w:ro" lockbox-test/hubenv:1 cat /w/index.html
echo "== renet hub install --check"
renet hub install "$(dirname "$workspaces")/docker-compose.yml" --check | tail -n 1
echo "== status"
renet hub status | python3 -c 'import json, sys; print(" ".join(sorted(e["user"] + ":" + e["status"] for e in json.load(sys.stdin)["environments"])))'
echo "== audit"
docker -H "$alice" run --rm --network none --name audited lockbox-test/hubenv:1 true; echo "rc=$?"
sleep 3
grep -h '"name":"audited"' /var/log/rediacc/hub/alice.log | sed -n 's/.*"action":"\([a-z_]*\)".*/\1/p' | sort -u | tr '\n' ' '; echo
grep -c '"name":"audited"' /var/log/rediacc/hub/bob.log
echo "== gc"
mkdir -p "$workspaces/ghost-docker" "$workspaces/ghost"
echo 40000 > "$workspaces/ghost-docker/.networkid"
touch -d '45 days ago' "$workspaces/ghost-docker/.networkid"
systemctl is-enabled rediacc-hub-gc.timer
renet hub gc "$workspaces" --dry-run --json | tr -d '\n'; echo
