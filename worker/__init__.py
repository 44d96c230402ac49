"""The Celery worker: claims jobs, supervises a training child process per job."""
