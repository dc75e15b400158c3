"""What sandboxed code may use: importable modules and the worker's resource limits."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

DEFAULT_MODULES = frozenset(
    {
        "bisect",
        "cmath",
        "collections",
        "datetime",
        "decimal",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "json",
        "math",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
    }
)

# Names an allowed module holds that read or write attributes from C or eval strings, out of
# reach of the guards (str.format's field syntax, update_wrapper copying __dict__, type hints).
DENIED_MODULE_NAMES: dict[str, frozenset[str]] = {
    "functools": frozenset({"wraps", "update_wrapper", "singledispatch", "singledispatchmethod"}),
    "string": frozenset({"Formatter"}),
    "operator": frozenset({"attrgetter", "methodcaller"}),
}


@dataclass(frozen=True)
class Policy:
    """Modules code may import and the limits of the worker process that runs it.

    ``timeout_s`` is the wall-clock default for ``Sandbox.run``; ``cpu_s`` the CPU seconds a run
    may use (None: the timeout rounded up, plus one). Commands (``Sandbox.run_command``) may also
    start up to ``processes`` processes and write files of up to ``file_bytes``; Python workers
    neither. ``unconfined_commands`` lets commands run where no OS layer could be applied.
    """

    modules: frozenset[str] = field(default=DEFAULT_MODULES)
    timeout_s: float = 10.0
    cpu_s: int | None = None
    memory_bytes: int = 1 << 30
    output_chars: int = 64_000
    value_chars: int = 8_000
    open_files: int = 16
    processes: int = 64
    file_bytes: int = 1 << 30
    unconfined_commands: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", frozenset(self.modules))
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.memory_bytes < 64 << 20:
            raise ValueError(f"memory_bytes must be at least 64 MiB, got {self.memory_bytes}")
        if self.output_chars < 1 or self.value_chars < 1:
            raise ValueError("output_chars and value_chars must be positive")
        bad = sorted(name for name in self.modules if not name.isidentifier())
        if bad:
            raise ValueError(f"module names must be top-level identifiers, got {bad}")

    def to_json(self) -> str:
        data = asdict(self)
        data["modules"] = sorted(self.modules)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        data["modules"] = frozenset(data["modules"])
        return cls(**data)
