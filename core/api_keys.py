"""API keys: making a token, hashing it, and the scopes a key may hold.

A token is `td_` and 43 URL-safe characters from `secrets.token_urlsafe(32)` (256 random bits).
Only its sha256 is stored: a token that random cannot be guessed from its hash, so a slow,
salted hash (as for passwords) would add cost and nothing else, and a plain digest can be
looked up by index. The prefix makes a leaked token recognisable (secret scanners, logs).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "td_"
# read: GET anything the key's owner owns; submit: create, cancel and delete (jobs, datasets);
# admin: everything, every owner's.
SCOPES = ("read", "submit", "admin")
# Owners are plain names: the key's --owner, or its name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
# The owner of what was made with no key: rows from before keys existed, and every request
# while TRAINDOCK_AUTH=off.
LOCAL_OWNER = "local"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(stored: str, token: str) -> bool:
    """Whether `token` hashes to `stored`, compared in constant time."""
    return hmac.compare_digest(stored.encode(), token_hash(token).encode())


def looks_like_token(text: str) -> bool:
    return text.startswith(TOKEN_PREFIX) and 20 <= len(text) <= 200


def parse_scopes(text: str) -> list[str]:
    """`read,submit` -> ['read', 'submit'] in SCOPES order; ValueError naming a bad one."""
    given = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [s for s in given if s not in SCOPES]
    if unknown or not given:
        named = f"; unknown: {', '.join(unknown)}" if unknown else ""
        raise ValueError(f"--scopes {text!r}: give a comma-separated list of "
                         f"{', '.join(SCOPES)} (e.g. read,submit){named}")
    return [s for s in SCOPES if s in given]


def check_name(label: str, value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{label} {value!r}: use 1 to 100 letters, digits, '.', '_', '-' or "
                         "'@', starting with a letter or digit")
    return value
