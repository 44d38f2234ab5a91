# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed, expiring tokens (cookies, one-time tickets): JSON, base64url, HMAC-SHA256.

A token is ``<payload>.<signature>``; ``purpose`` is signed with it, so a token made for one
use (a login attempt) is never accepted for another (a session).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

MIN_SECRET_BYTES = 32


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret, purpose, body):
    return hmac.new(secret, purpose.encode() + b"\0" + body.encode("ascii"), hashlib.sha256).digest()


def sign(secret, purpose, payload, now, lifetime):
    """A token for ``payload`` (a dict) valid for ``lifetime`` seconds from ``now``."""
    body = _b64(json.dumps(dict(payload, exp=int(now + lifetime)), sort_keys=True, separators=(",", ":")).encode())
    return "%s.%s" % (body, _b64(_mac(secret, purpose, body)))


def verify(secret, purpose, token, now):
    """The payload of a valid, unexpired token for ``purpose``, else None (never raises)."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 8192:
        return None
    body, signature = token.split(".")
    try:
        if not hmac.compare_digest(_unb64(signature), _mac(secret, purpose, body)):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] <= now:
        return None
    return payload


def secret_from_hex(text):
    """The key of a hex secret of at least MIN_SECRET_BYTES bytes, or None when it is not one."""
    try:
        key = bytes.fromhex((text or "").strip())
    except ValueError:
        return None
    return key if len(key) >= MIN_SECRET_BYTES else None


def random_token(size=32):
    return secrets.token_urlsafe(size)


def pkce_challenge(verifier):
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def constant_equal(left, right):
    """Equality of two strings in time that does not depend on where they differ."""
    return hmac.compare_digest(str(left).encode("utf-8"), str(right).encode("utf-8"))
