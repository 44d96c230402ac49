"""The `traindock keys` arguments, apart from cli/keys.py: building the parser must not import
the database code that the keys verbs use (every client verb builds it)."""

from __future__ import annotations

import argparse


def add_keys_parser(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys (on the database, "
                          "TRAINDOCK_DATABASE_URL)")
    verbs = keys.add_subparsers(dest="keys_command", required=True)
    create = verbs.add_parser("create", help="make a key; its token is printed once")
    create.add_argument("--name", required=True, help="what the key is called (unique)")
    create.add_argument("--scopes", required=True,
                        help="comma-separated: read (GET), submit (create, cancel, delete), "
                        "admin (every owner's jobs and datasets)")
    create.add_argument("--owner", help="whose jobs and datasets the key makes and sees "
                        "(default: the key's name); several keys may share an owner")
    create.add_argument("--expires-days", type=float, metavar="DAYS",
                        help="refuse the key after this many days (default: until revoked)")
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    listing = verbs.add_parser("list", help="every key, without its token")
    listing.add_argument("--json", action="store_true", help="print the keys as JSON")
    revoke = verbs.add_parser("revoke", help="stop accepting a key (at once)")
    revoke.add_argument("key", metavar="NAME_OR_ID", help="the key's name or id")
