"""Print one of the README's two set-up commands ("run" or "test"), so CI runs exactly what the README says."""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARKERS = {"run": "<!-- command: run -->", "test": "<!-- command: test -->"}


def readme_command(which: str, readme: Path = README) -> str:
    """The fenced shell line that follows the marker for ``which`` in the README."""
    text = readme.read_text(encoding="utf-8")
    marker = MARKERS[which]
    match = re.search(re.escape(marker) + r"\s*```(?:sh|bash|shell)?\n(.+?)\n```", text)
    if match is None:
        raise SystemExit(f"README.md has no fenced command after {marker}")
    return match.group(1).strip()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MARKERS:
        raise SystemExit("usage: readme_command.py run|test")
    print(readme_command(sys.argv[1]))
