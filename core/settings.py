"""The one settings object. Every knob is an environment variable with the TRAINDOCK_ prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import psutil
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
BROKER_SCHEMES = ("redis://", "rediss://", "filesystem://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINDOCK_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/traindock"
    broker_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./traindock-data")

    # Jobs
    lease_ttl_s: float = Field(30.0, description="a running job's lease; renewed every ttl/3")
    max_attempts: int = Field(3, ge=1, le=20)
    cancel_poll_s: float = Field(0.25, gt=0, le=1.0)
    metric_flush_s: float = Field(1.0, gt=0, le=10.0)

    # Recovery (the reaper runs in every worker; an advisory lock makes one pass at a time)
    reaper_interval_s: float = Field(5.0, gt=0, le=600)
    republish_after_s: float = Field(
        30.0, ge=0, le=86_400,
        description="a queued job with no message in the broker for this long is published again",
    )
    preempt_grace_s: float = Field(
        30.0, gt=0, le=3600,
        description="on worker shutdown, time the training child gets to checkpoint and exit",
    )
    worker_heartbeat_s: float = Field(5.0, gt=0, le=300)
    max_child_memory_mb: int | None = Field(
        None, ge=0,
        description="a training process whose resident memory passes this is killed and its "
        "job fails with what it needed; specs whose estimated memory passes it are refused "
        "(0: no limit; unset: three quarters of this machine's memory)",
    )
    db_retry_s: float = Field(
        600.0, gt=0, le=86_400,
        description="how long a training child keeps retrying the database before it gives up",
    )
    stall_timeout_s: float = Field(
        600.0, ge=0, le=86_400,
        description="kill a training process that has used no CPU time for this long "
        "(stopped, deadlocked, or blocked on a disk or device that does not answer) and retry "
        "its job while attempts remain; the time the database is unreachable does not count "
        "(0: off)",
    )

    # Limits on what one job may ask for
    max_epochs: int = Field(10_000, ge=1)
    max_batch_size: int = Field(65_536, ge=1)
    max_params: int = Field(500_000_000, ge=1)
    max_layers: int = Field(256, ge=1)
    max_spec_bytes: int = Field(256 * 1024, ge=1024)
    http_keep_alive_s: float = Field(
        75.0, gt=0, le=3600,
        description="how long the API keeps an idle HTTP connection open; longer than the "
        "idle timeout of the clients and proxies in front of it, so that they close first "
        "(when the server closes first, a request sent at that moment is reset)",
    )
    keep_checkpoints: int = Field(3, ge=1, le=100)
    keep_checkpoints_finished: int = Field(
        0, ge=0, le=100,
        description="once a job has ended (succeeded, failed, cancelled or pruned), keep its "
        "last N checkpoints and its best, and delete the rest (0: keep what training kept, the "
        "last TRAINDOCK_KEEP_CHECKPOINTS and the best)",
    )
    warm_child: bool = Field(
        True,
        description="keep a training interpreter started ahead, with torch imported, for the "
        "next job (saves seconds per job; costs about 300 MB while the worker is idle); "
        "false starts a fresh one for each job",
    )
    warm_child_jobs: int = Field(
        1, ge=1, le=1000,
        description="jobs one warm training process may train, one after another, before it "
        "exits and a fresh one is started (1: a process per job). A process that touched a "
        "GPU, or whose job did not end normally (crash, cancel, preemption, lost database), "
        "exits after it whatever this says; reuse saves each CPU job the hand-over to a "
        "new interpreter (small sweep trials: docs/benchmarks.md)",
    )
    cpu_threads: int = Field(
        0, ge=0, le=1024,
        description="torch's intra-op threads in a training child (0: OMP_NUM_THREADS when "
        "set, else one less than the cores this process may use, at least 1, so that a core "
        "is left for the worker, the API and PostgreSQL)",
    )
    device_data_mb: int = Field(
        1024, ge=0,
        description="a job's float32 arrays up to this size are copied to the device whole; "
        "larger ones stay memory-mapped and are streamed in batches",
    )

    # Uploaded and imported datasets
    max_upload_bytes: int = Field(
        2 * 1024**3, ge=1024, le=1024**4,
        description="the largest dataset upload or URL import, counted as the bytes arrive",
    )
    max_unpacked_bytes: int = Field(
        4 * 1024**3, ge=1024, le=4 * 1024**4,
        description="the most an uploaded archive may unpack to (refuses zip bombs)",
    )
    import_timeout_s: float = Field(
        60.0, gt=0, le=3600,
        description="a URL import's connect and read timeout (each wait, not the whole download)",
    )
    import_deadline_s: float = Field(
        300.0, gt=0, le=86_400,
        description="a URL import's whole download, redirects included, must end within this",
    )
    url_import_allow_private: bool = Field(
        False,
        description="let URL imports (and other outbound requests) reach loopback, private, "
        "link-local and other non-public addresses; off, only public addresses are fetched",
    )
    url_import_allow_networks: str = Field(
        "",
        description="comma-separated networks (CIDR, e.g. 10.1.2.0/24,127.0.0.1/32) that URL "
        "imports may reach although they are not public; narrower than "
        "TRAINDOCK_URL_IMPORT_ALLOW_PRIVATE",
    )
    ingest_memory_mb: int = Field(
        3072, ge=256, le=1024 * 1024,
        description="address space (virtual memory) of the child process that parses, "
        "summarises and stores one upload or import; past it the upload is refused with a 413",
    )
    ingest_concurrency: int = Field(
        2, ge=1, le=64,
        description="parsing children one API process runs at once; further uploads wait "
        "their turn (each child may take TRAINDOCK_INGEST_MEMORY_MB)",
    )
    ingest_cpu_s: int = Field(
        300, ge=1, le=86_400,
        description="CPU seconds the parsing child of one upload or import may use",
    )
    ingest_deadline_s: float = Field(
        600.0, gt=0, le=86_400,
        description="wall-clock seconds the parsing child of one upload or import may take",
    )
    export_deadline_s: float = Field(
        300.0, gt=0, le=86_400,
        description="wall-clock seconds the child process that exports one checkpoint "
        "(GET /v1/jobs/{id}/export) may take; past it the request gets a 503",
    )
    export_idle_s: float = Field(
        120.0, gt=0, le=86_400,
        description="seconds an export child process is kept after its last export, so that "
        "the next one does not pay for starting it; then it exits and frees its memory",
    )
    export_concurrency: int = Field(
        1, ge=1, le=64,
        description="export children one API process runs at once; further exports wait "
        "their turn",
    )
    max_parsed_bytes: int = Field(
        1024**3, ge=1024, le=1024**4,
        description="the most the float32 arrays parsed from one upload may take (images "
        "resized large, integers widened, IDX and CSV tables), checked before they are made",
    )

    # A database that stops answering must not hang the API (api/db_watch.py).
    db_probe_interval_s: float = Field(
        1.0, gt=0, le=60,
        description="how often each API process asks the database whether it answers",
    )
    db_answer_timeout_s: float = Field(
        2.0, gt=0, le=60,
        description="a database that has not answered the API's probe within this is "
        "down: requests get 503 with Retry-After until it answers again",
    )
    db_statement_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="PostgreSQL cancels an API statement that runs longer than this",
    )

    # Who may call the API (docs/security.md).
    rate_limit_per_s: float = Field(
        20.0, ge=0, le=100_000,
        description="requests per second one API key may make to one API process, beyond a "
        "burst of TRAINDOCK_RATE_LIMIT_BURST; past it a 429 with Retry-After (0: no limit)",
    )
    rate_limit_burst: int = Field(40, ge=1, le=1_000_000)
    max_stored_bytes_per_owner: int = Field(
        100 * 1024**3, ge=0, le=1024**5,
        description="bytes of datasets and checkpoints one owner may store; an upload or "
        "import past it is a 413, a submission while past it a 409 (0: no limit). Checked "
        "when data arrives and when a job is submitted: running jobs' checkpoints are never "
        "refused mid-run",
    )
    max_active_jobs_per_owner: int = Field(
        1000, ge=0,
        description="queued and running jobs one owner may have; a submission past it is a "
        "429 (0: no limit)",
    )
    max_sweep_jobs: int = Field(
        1000, ge=1, le=100_000,
        description="jobs one sweep may run (trials x repeats); a sweep past it is a 422 "
        "naming budget.trials, before any trial starts",
    )
    auth: bool = Field(
        True,
        description="require an API key (Authorization: Bearer, or the dashboard's cookie) on "
        "every /v1 route and dashboard page; off (TRAINDOCK_AUTH=off) every caller is an "
        "admin of owner `local`: only for a single user on a loopback address",
    )

    # Predictions (inference/server.py, api/routes/predict.py)
    predict_cache_mb: float = Field(
        512.0, gt=0, le=1024 * 1024,
        description="parameters and buffers of the models the prediction server keeps loaded; "
        "past it the least recently used model is dropped (and loaded again when asked for)",
    )
    predict_max_rows: int = Field(
        1024, ge=1, le=1_000_000,
        description="rows (or images) one POST /v1/jobs/{id}/predict may send; more is a 413",
    )
    predict_max_body_bytes: int = Field(
        16 * 1024**2, ge=1024, le=1024**3,
        description="the largest body POST /v1/jobs/{id}/predict accepts (JSON or files)",
    )
    predict_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="a prediction not answered within this is a 504; the prediction server "
        "is killed and started again",
    )
    predict_threads: int = Field(
        1, ge=1, le=256, description="the prediction server's torch threads")

    # Webhooks (worker/webhooks.py)
    webhook_allow_private: bool = Field(
        False, description="send webhooks to loopback and private addresses too (a server "
        "whose receivers live on its own network); off, only public addresses",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=120,
                                     description="how long one delivery waits for an answer")
    webhook_retry_base_s: float = Field(
        2.0, gt=0, le=3600, description="the first retry's delay; each next one doubles, "
        "up to an hour")
    webhook_give_up_s: float = Field(
        86_400.0, gt=0, description="a delivery not answered with a 2xx this long after its "
        "event is given up")

    # Observability (docs/integration.md)
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="log lines as one JSON object each (json) or as plain text (text); auto: "
        "text on a terminal, JSON otherwise. A training attempt's log (traindock logs) stays "
        "text; with json it also gets a JSON-lines copy, attempt-<n>.jsonl, beside it",
    )
    metrics_query_timeout_s: float = Field(
        2.0, gt=0, le=30,
        description="GET /metrics reads job and worker figures from the database within this; "
        "past it the scrape answers without them and traindock_database_up is 0",
    )

    # Browser defences (api/browser_defences.py)
    allowed_hosts: str = Field(
        "", max_length=4096,
        description="comma-separated host names the API answers to (its Host header); a "
        "request naming another gets a 421, which stops DNS-rebinding pages from reading the "
        "API. Empty: localhost, 127.0.0.1, ::1 and the address the API listens on; * allows "
        "any name (only behind a proxy that checks it)",
    )
    bind_host: str = Field(
        "", max_length=255,
        description="set by `traindock api --host` for its own processes: the address it "
        "listens on, allowed as a host name",
    )

    # Broker publishing must never hang a request.
    publish_timeout_s: float = Field(2.0, gt=0, le=30)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(POSTGRES_SCHEMES):
            raise ValueError(
                "TRAINDOCK_DATABASE_URL must be a PostgreSQL URL "
                "(postgresql://user@host:port/db); traindock has no SQLite path"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(BROKER_SCHEMES):
            raise ValueError(
                "TRAINDOCK_BROKER_URL must start with redis://, rediss:// or filesystem://"
            )
        return value

    @field_validator("lease_ttl_s")
    @classmethod
    def _sane_lease(cls, value: float) -> float:
        if not 3.0 <= value <= 3600.0:
            raise ValueError(
                "TRAINDOCK_LEASE_TTL_S must be between 3 and 3600 seconds: shorter leases expire "
                "under ordinary load, longer ones leave a lost job unnoticed for too long"
            )
        return value

    @model_validator(mode="after")
    def _resolve_data_dir(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.data_dir == Path("/"):
            raise ValueError("TRAINDOCK_DATA_DIR must not be the filesystem root")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if self.database_url.startswith(prefix):
                return "postgresql+psycopg://" + self.database_url[len(prefix):]
        return self.database_url

    @property
    def psycopg_url(self) -> str:
        """The database URL as libpq and psycopg take it."""
        return self.sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def child_memory_limit_mb(self) -> int:
        """The training process's memory limit in MB (0: none), the default resolved."""
        if self.max_child_memory_mb is not None:
            return self.max_child_memory_mb
        return int(psutil.virtual_memory().total * 0.75 / 2**20)

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def dataset_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()
