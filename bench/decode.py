"""Plain vs MTP decode speed in one run: ``python bench/decode.py [--model DIR] [--mtp-depth N] ...``.

The same as ``optiq bench decode``; see ``agent/cli/bench.py``.
"""

import sys

from agent.cli import main
from optiq_runtime.fastcpu import reexec_with_openblas

if __name__ == "__main__":
    reexec_with_openblas(sys.argv)
    sys.exit(main(["bench", "decode", *sys.argv[1:]]))
