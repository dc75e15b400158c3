"""Test-wide setup: run the suite with OpenBLAS preloaded on Linux (see optiq_runtime.fastcpu)."""

import sys

from optiq_runtime.fastcpu import reexec_with_openblas

# Re-executing pytest before collection is the only way to get LD_PRELOAD into this process.
reexec_with_openblas(["-m", "pytest", *sys.argv[1:]])
