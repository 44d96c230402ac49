"""`traindock keys create|list|revoke`: API keys, on the database itself (TRAINDOCK_DATABASE_URL),
not over HTTP: the first key has to be made before any key exists to call the API with. Whoever
can reach the database is an administrator already."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from sqlalchemy.exc import OperationalError

from cli.format import render_table
from core.api_keys import parse_scopes
from core.db import Database
from core.repo.api_keys import ApiKeyProblem, create_key, is_usable, list_keys, revoke_key
from core.settings import get_settings
from core.tables import ApiKey


def _when(stamp: datetime | None) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _expiry(key: ApiKey) -> str:
    return f", expires {_when(key.expires_at)} UTC" if key.expires_at else ""


def _state(key: ApiKey) -> str:
    if key.revoked_at:
        return f"revoked {_when(key.revoked_at)}"
    return "active" if is_usable(key) else "expired"


def _as_dict(key: ApiKey) -> dict:
    return {"id": key.id, "name": key.name, "owner": key.owner, "scopes": key.scopes,
            "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None}


def run_keys(args: argparse.Namespace) -> int:
    try:
        with Database.connect(get_settings(), pool_size=1).transaction() as session:
            return _run(session, args)
    except (ApiKeyProblem, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        url = get_settings().database_url.split("@")[-1]
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        print(f"error: cannot reach the database at {url} ({reason}); set "
              "TRAINDOCK_DATABASE_URL to the service's PostgreSQL (`traindock up` prints it)",
              file=sys.stderr)
        return 2


def _run(session, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        key, token = create_key(session, args.name, parse_scopes(args.scopes), args.owner,
                                args.expires_days)
        if args.json:
            print(json.dumps({**_as_dict(key), "token": token}))
        else:
            print(f"key {key.name!r} (id {key.id}, owner {key.owner!r}, scopes "
                  f"{','.join(key.scopes)}{_expiry(key)}) created. Its token, shown only "
                  f"now:\n\n  {token}\n\n"
                  "Send it as 'Authorization: Bearer <token>', or export TRAINDOCK_API_KEY=<token>"
                  " for the traindock client.")
        return 0
    if args.keys_command == "list":
        keys = list_keys(session)
        if args.json:
            print(json.dumps([_as_dict(k) for k in keys]))
            return 0
        rows = [[str(k.id), k.name, k.owner, ",".join(k.scopes), _when(k.created_at),
                 _when(k.last_used_at), _when(k.expires_at), _state(k)] for k in keys]
        print(render_table(["ID", "NAME", "OWNER", "SCOPES", "CREATED", "LAST USED", "EXPIRES",
                            "STATE"], rows))
        return 0
    key = revoke_key(session, args.key)
    print(f"key {key.name!r} (id {key.id}) revoked at {_when(key.revoked_at)}; the API refuses "
          "it from now on")
    return 0
