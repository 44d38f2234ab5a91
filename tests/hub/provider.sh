#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The OpenID provider of the Hub's guest scenario, on this controller (tests/oidc).
# Usage: provider.sh start DIR   start it (once; a second start reuses it), print its port
#        provider.sh stop DIR    stop it
# Guests reach it as 10.0.2.2:<port> (QEMU user networking), which is its issuer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$2
mkdir -p "$dir"
case $1 in
  start)
    if [ -f "$dir/oidc.pid" ] && kill -0 "$(cat "$dir/oidc.pid")" 2>/dev/null; then
      cat "$dir/oidc.port"; exit 0
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ISSUER="http://10.0.2.2:$port" PORT=$port CLIENT_SECRET=$(cat "$dir/oidc.secret") \
      REDIRECT_URIS='["https://code.hub.test/_hub/callback"]' \
      setsid node "$here/../oidc/provider.js" > "$dir/oidc.log" 2>&1 < /dev/null &
    echo $! > "$dir/oidc.pid"
    for _ in $(seq 50); do
      grep -q "^listening " "$dir/oidc.log" && { echo "$port" > "$dir/oidc.port"; echo "$port"; exit 0; }
      sleep 0.2
    done
    echo "provider.sh: the provider did not start:" >&2; cat "$dir/oidc.log" >&2; exit 1 ;;
  stop)
    if [ -f "$dir/oidc.pid" ]; then
      kill "$(cat "$dir/oidc.pid")" 2>/dev/null || true
    fi
    rm -f "$dir/oidc.pid" "$dir/oidc.port" ;;
  *) echo "usage: provider.sh start|stop DIR" >&2; exit 2 ;;
esac
