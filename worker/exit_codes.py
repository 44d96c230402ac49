"""The training child's exit codes, which the supervisor turns into a job's state. Their own
module: the supervisor must not import the child, which imports torch (about 215 MB and 2 s
that an idle worker would carry for nothing)."""

EXIT_OK = 0
EXIT_TRAINING_ERROR = 3  # the job's spec or data made training fail: error recorded
EXIT_LEASE_LOST = 4  # another attempt owns the job: nothing to record
EXIT_CRASH = 5  # an unexpected exception: traceback recorded
EXIT_PREEMPTED = 6  # stopped on SIGTERM after writing a checkpoint: the job goes back to the queue
EXIT_DATABASE_GONE = 7  # the database stayed unreachable: retried like a killed attempt
EXIT_DISK_FULL = 8  # no space left writing a checkpoint: error recorded; retried after a delay
EXIT_PRUNED = 9  # a sweep's pruner stopped the trial: points flushed, reason recorded
