"""The child process that turns one received file into a dataset folder: parse, summarise,
write the arrays into a `.tmp-` folder. `python -m core.uploads.ingest_child` reads one JSON
request on stdin and writes one JSON answer on stdout; the API starts it (api/bounded_ingest.py)
so that whatever an upload costs, it costs it here, under limits, and never in the API:

- RLIMIT_AS: a parse that needs more address space than TRAINDOCK_INGEST_MEMORY_MB gets a
  MemoryError, answered as a 413 that names the setting;
- RLIMIT_CPU: past TRAINDOCK_INGEST_CPU_S the kernel ends the process (SIGXCPU), and the API
  answers 422; the API also kills it at a wall-clock deadline or when the client hangs up.

The answer is {"ok": {...}} or {"error": {"field", "message", "status"}}.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

MiB = 1 << 20


def limit(memory_bytes: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed parse leaves no core file


def memory_message(memory_bytes: int) -> str:
    return (f"the upload needs more than {memory_bytes // MiB} MB to parse; the limit is "
            f"{memory_bytes // MiB} MB (setting TRAINDOCK_INGEST_MEMORY_MB); upload less data "
            "at once (fewer rows, fewer or smaller images)")


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Parse, summarise and write; what the API needs to record the dataset."""
    from core.dataset_store import write_folder
    from core.dataset_summary import class_counts, feature_stats
    from core.uploads.formats import ParseOptions, format_from_filename, parse_upload

    options = request["options"]
    size = options.get("image_size")
    parse = ParseOptions(
        target=options.get("target"), task=options.get("task"),
        image_size=tuple(size) if size else None, color=options.get("color") or "rgb",
        max_unpacked_bytes=request["max_unpacked_bytes"],
        max_parsed_bytes=request["max_parsed_bytes"],
        work_dir=Path(request["work_dir"]),
    )
    path = Path(request["path"])
    fmt = options.get("format") or format_from_filename(request["filename"], path, parse)
    parsed = parse_upload(path, fmt, parse)
    counts = class_counts(parsed)
    stats = feature_stats(parsed.x_train)
    sha256, size_bytes, meta = write_folder(parsed, Path(request["tmp_dir"]))
    return {"format": fmt, "sha256": sha256, "bytes": size_bytes, "meta": meta,
            "class_counts": counts, "feature_stats": stats}


def main() -> int:
    request = json.loads(sys.stdin.read())
    limit(request["memory_bytes"], request["cpu_s"])
    from core.uploads.parsed import UploadError

    try:
        answer: dict[str, Any] = {"ok": run(request)}
    except UploadError as exc:
        answer = {"error": {"field": exc.field, "message": exc.message, "status": exc.status}}
    except MemoryError:
        answer = {"error": {"field": "file", "message": memory_message(request["memory_bytes"]),
                            "status": 413}}
    except RecursionError:
        answer = {"error": {"field": "file", "message": "is nested too deeply to read",
                            "status": 422}}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
