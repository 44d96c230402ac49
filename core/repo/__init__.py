"""Database reads and writes, one module per table family. Writes of a running job are
guarded by (job_id, attempt) so that a stale attempt never overwrites a newer one."""
