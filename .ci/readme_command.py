"""Print the one-line command of the README's Quickstart step N (1: install and start,
2: install and test), read from its ```bash block. .ci/first_command.sh runs step 1 from
here, and tests/test_readme_commands.py checks both, so that the README is what CI runs.

Usage: python3 .ci/readme_command.py N [README.md]"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def quickstart_command(readme: str, step: int) -> str:
    if "\n## Quickstart" not in readme:
        raise ValueError("README.md has no '## Quickstart' section")
    quickstart = readme.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    marker = f"**{step}."
    if marker not in quickstart:
        raise ValueError(f"the Quickstart has no step {marker}")
    block = re.search(r"```bash\n(.*?)```", quickstart.split(marker, 1)[1], flags=re.S)
    if block is None:
        raise ValueError(f"step {step} of the Quickstart has no ```bash block")
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"step {step} should be one command line, found {lines}")
    return lines[0].strip()


if __name__ == "__main__":
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent.parent / "README.md"
    try:
        print(quickstart_command(path.read_text(), int(sys.argv[1])))
    except (IndexError, ValueError) as exc:
        sys.exit(f"readme_command: {exc}")
