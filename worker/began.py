"""When this interpreter began importing the training child: worker/child.py imports this
module before anything else, so that an attempt's start-up splits into the interpreter's own
start (spawn to here) and the imports (here to the job's first phase)."""

from __future__ import annotations

import time

IMPORTS_BEGAN = time.time()

# Set by worker/spawn.py to the time.time() at which it started the process: the interpreter's
# own start-up is measured from there (worker/startup.py).
SPAWNED_AT_ENV = "TRAINDOCK_CHILD_SPAWNED_AT"
