"""What a subcommand says until its issue lands."""

import sys


def not_built(command: str) -> int:
    """Say clearly that ``command`` is not built yet; exit status 1."""
    print(f"optiq {command}: not built yet in this version of optiq-agent.", file=sys.stderr)
    return 1
