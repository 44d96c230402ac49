"""`traindock keys create|list|revoke` on the session's database, and the keys they make used
against an API that asks for them: a revoked key is refused at once; the client verbs send the
key from TRAINDOCK_API_KEY."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx

from tests.conftest import ROOT


def traindock(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_create_list_revoke(service_env, auth_api_url):
    name = f"ci-{uuid.uuid4().hex[:8]}"
    made = traindock("keys", "create", "--name", name, "--scopes", "submit,read",
                     "--owner", "team-x", env=service_env)
    assert made.returncode == 0, made.stderr
    [token] = [word for word in made.stdout.split() if word.startswith("td_")]
    assert "shown only now" in made.stdout
    listed = traindock("keys", "list", env=service_env)
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if f" {name} " in line]
    assert "team-x" in row and "read,submit" in row and "active" in row
    assert token not in listed.stdout
    as_json = json.loads(traindock("keys", "list", "--json", env=service_env).stdout)
    mine = next(k for k in as_json if k["name"] == name)
    assert mine["owner"] == "team-x" and mine["revoked_at"] is None and "token" not in mine

    headers = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{auth_api_url}/v1/jobs", headers=headers, timeout=30).status_code == 200
    # the client verbs send the key from the environment
    with_key = service_env | {"TRAINDOCK_API_KEY": token, "TRAINDOCK_URL": auth_api_url}
    assert traindock("ls", env=with_key).returncode == 0
    without = traindock("ls", env=service_env | {"TRAINDOCK_URL": auth_api_url,
                                                 "TRAINDOCK_CONFIG": "/nonexistent"})
    assert without.returncode == 1 and "no API key" in without.stderr, without.stderr
    assert "TRAINDOCK_API_KEY" in without.stderr

    revoked = traindock("keys", "revoke", name, env=service_env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    refused = httpx.get(f"{auth_api_url}/v1/jobs", headers=headers, timeout=30)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    listed = traindock("keys", "list", env=service_env).stdout
    [row] = [line for line in listed.splitlines() if f" {name} " in line]
    assert "active" not in row
    assert mine["last_used_at"] is None
    used = next(k for k in json.loads(traindock("keys", "list", "--json", env=service_env).stdout)
                if k["name"] == name)
    assert used["last_used_at"] is not None and used["revoked_at"] is not None


def test_bad_arguments_say_what_to_change(service_env):
    bad_scope = traindock("keys", "create", "--name", "x-bad", "--scopes", "read,write",
                          env=service_env)
    assert bad_scope.returncode == 2 and "unknown: write" in bad_scope.stderr, bad_scope.stderr
    bad_name = traindock("keys", "create", "--name", "no spaces", "--scopes", "read",
                         env=service_env)
    assert bad_name.returncode == 2 and "--name" in bad_name.stderr, bad_name.stderr
    name = f"twice-{uuid.uuid4().hex[:8]}"
    assert traindock("keys", "create", "--name", name, "--scopes", "read",
                     env=service_env).returncode == 0
    again = traindock("keys", "create", "--name", name, "--scopes", "read", env=service_env)
    assert again.returncode == 2 and "exists already" in again.stderr, again.stderr
    missing = traindock("keys", "revoke", f"nobody-{uuid.uuid4().hex[:6]}", env=service_env)
    assert missing.returncode == 2 and "no key named" in missing.stderr
    nowhere = traindock("keys", "list", env=service_env | {
        "TRAINDOCK_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    assert nowhere.returncode == 2 and "cannot reach the database" in nowhere.stderr, \
        nowhere.stderr


def test_a_key_made_to_expire_says_when_and_a_bad_expiry_is_refused(service_env):
    name = f"ci-{uuid.uuid4().hex[:8]}"
    made = traindock("keys", "create", "--name", name, "--scopes", "read", "--expires-days",
                     "30", env=service_env)
    assert made.returncode == 0 and "expires 20" in made.stdout, made.stderr
    listed = json.loads(traindock("keys", "list", "--json", env=service_env).stdout)
    assert next(k for k in listed if k["name"] == name)["expires_at"] is not None
    bad = traindock("keys", "create", "--name", f"{name}-b", "--scopes", "read",
                    "--expires-days", "0", env=service_env)
    assert bad.returncode == 2 and "days above 0" in bad.stderr
