"""A pytest plugin (``-p optiq_runtime.pytest_openblas``) that runs the suite with OpenBLAS preloaded.

Loaded through ``addopts`` it is imported before pytest redirects the output streams, which
is the last moment a re-executed process still writes to the terminal.
"""

import sys

from optiq_runtime.fastcpu import reexec_with_openblas

reexec_with_openblas(["-m", "pytest", *sys.argv[1:]])
