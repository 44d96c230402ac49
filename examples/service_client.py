"""A service that trains a model on traindock and keeps its best weights, using the Python
client: submit a spec, wait for it, read its metrics, download the best checkpoint (checked
against its SHA-256), and receive the job's webhooks, each verified before it is believed.

    TRAINDOCK_URL=http://127.0.0.1:8000 python examples/service_client.py --epochs 2

The receiver listens on --listen (127.0.0.1, a free port). A server refuses webhooks to
loopback and private addresses unless it runs with TRAINDOCK_WEBHOOK_ALLOW_PRIVATE=true; then
this example says so and goes on without them (--public-url: where the server can reach the
receiver, e.g. behind a tunnel)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from traindock import Client, Invalid, TraindockError
from traindock.webhooks import verify

HERE = Path(__file__).resolve().parent


class WebhookReceiver:
    """Answers 204 to a delivery signed with `secret`, 401 to anything else; keeps the
    verified events' bodies."""

    def __init__(self, secret: str, host: str, port: int) -> None:
        self.events: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                # Verify the raw bytes as received, before parsing or acting on them.
                ok = verify(secret, dict(self.headers.items()), body)
                if ok:
                    receiver.events.append(json.loads(body))
                print(f"webhook {'verified' if ok else 'REFUSED (bad signature)'}: "
                      f"{json.loads(body).get('type') if ok else self.headers.get('webhook-id')}",
                      flush=True)
                self.send_response(204 if ok else 401)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/traindock-hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event_type: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(event["type"] == event_type for event in self.events):
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=HERE / "digits-mlp.json")
    parser.add_argument("--epochs", type=int, help="train for this many epochs instead")
    parser.add_argument("--dest", type=Path, default=Path("."), help="folder for the weights")
    parser.add_argument("--listen", default="127.0.0.1:0", help="the receiver's HOST:PORT")
    parser.add_argument("--public-url", help="the receiver's URL as the server reaches it")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the job")
    args = parser.parse_args(argv)

    spec = json.loads(args.spec.read_text())
    if args.epochs:
        spec["training"] = spec.get("training", {}) | {"epochs": args.epochs}
    host, _, port = args.listen.rpartition(":")
    with Client() as td:  # $TRAINDOCK_URL and $TRAINDOCK_API_KEY
        receiver = WebhookReceiver(td.webhook_secret(), host, int(port))
        try:
            job = submit(td, spec, args.public_url or receiver.url)
            print(f"submitted {job.id} ({job.name}), {job.state}", flush=True)
            job = td.wait(job, timeout=args.timeout)
            print(f"job {job.id} {job.state}" + (f": {job.error}" if job.error else ""))
            if job.state != "succeeded":
                return 1
            for name, series in td.metrics(job, names=["val_loss", "val_accuracy"]).items():
                print(f"{name} by epoch: " + ", ".join(f"{p.value:.4f}" for p in series.points))
            print(f"test metrics: {job.test}")
            args.dest.mkdir(parents=True, exist_ok=True)
            path = td.download_checkpoint(job, "best", dest=args.dest)
            best = next(c for c in td.checkpoints(job) if c.best)
            print(f"best checkpoint (step {best.step}, sha256 {best.sha256[:12]}...) saved to "
                  f"{path}")
            if job.spec.get("notify"):
                got = receiver.wait_for("job.succeeded", timeout=30)
                print(f"webhooks verified: {[e['type'] for e in receiver.events]}"
                      + ("" if got else " (job.succeeded not delivered within 30 s)"))
        finally:
            receiver.close()
    return 0


def submit(td: Client, spec: dict, hook_url: str):
    """Submit with webhooks to `hook_url`; without them when the server refuses that address."""
    try:
        return td.submit(spec | {"notify": {"url": hook_url}})
    except Invalid as exc:
        if exc.fields != ["notify.url"]:
            raise
        print(f"no webhooks: {exc}", flush=True)
        return td.submit(spec)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TraindockError as exc:  # what to do, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
