"""Scripted evaluation over several processes: which (model, task) pairs each runs, and merging their results.

A results folder run by several processes (``mlx.launch`` ranks, or ``--shard I/N`` processes a
scheduler started) holds, beside the merged ``results.jsonl`` and ``summary.json``:

- ``plan.json``: the models and entry ids of the run, in order (what a complete run holds);
- ``parts/<shard>.jsonl``: one process's results, appended as each task completes;
- ``parts/<shard>.alive``: its pid, touched every few seconds while it runs;
- ``parts/<shard>.done``: written once it finished its share.

Merging needs no collective (a rank that died cannot hang it): it reads files, keeps the first
result of each pair, orders them as one process would have, and names the pairs no file holds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optiq_runtime.errors import BadInputError

PLAN = "plan.json"
PARTS = "parts"
HEARTBEAT_S = 2.0

Pair = tuple[str, str]  # (model label, entry id)


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def take(self, pairs: list[Pair]) -> set[Pair]:
        """This process's share of ``pairs``: every ``count``-th, from its ``index``."""
        return set(pairs[self.index :: self.count])


def parse_shard(text: str) -> Shard:
    """``I/N`` (0 <= I < N) as a ``Shard``."""
    index, _, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        raise BadInputError(
            f"--shard takes I/N (this process's index from 0, and the number of processes); got {text!r}"
        ) from None
    if not 0 <= shard.index < shard.count:
        raise BadInputError(f"--shard {text}: I must be from 0 to N-1")
    return shard


@dataclass
class Plan:
    """The models and entry ids of a run, in the order one process runs them."""

    models: list[str]
    ids: list[str]

    def pairs(self) -> list[Pair]:
        return [(model, entry) for model in self.models for entry in self.ids]

    def write(self, folder: Path) -> None:
        _write_atomically(folder / PLAN, json.dumps({"models": self.models, "ids": self.ids}) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Plan | None:
        file = folder / PLAN
        if not file.is_file():
            return None
        data = json.loads(file.read_text(encoding="utf-8"))
        return cls(list(data["models"]), list(data["ids"]))


def part_file(folder: Path, shard: Shard) -> Path:
    (folder / PARTS).mkdir(parents=True, exist_ok=True)
    return folder / PARTS / f"{shard.name}.jsonl"


def result_files(folder: Path) -> list[Path]:
    """``results.jsonl`` and every part file of ``folder``."""
    parts = sorted((folder / PARTS).glob("*.jsonl")) if (folder / PARTS).is_dir() else []
    return [folder / "results.jsonl", *parts]


def finished_pairs(folder: Path) -> set[Pair]:
    """Every (model, id) some process of any earlier run recorded in ``folder``."""
    from agent.evaluate import ResultsFile

    return set().union(*(ResultsFile(f).finished() for f in result_files(folder)))


class Heartbeat:
    """Touches ``parts/<shard>.alive`` while this process runs its share; ``finish`` writes ``.done``."""

    def __init__(self, folder: Path, shard: Shard):
        self.alive = part_file(folder, shard).with_suffix(".alive")
        self.done = self.alive.with_suffix(".done")
        self.done.unlink(missing_ok=True)
        self.alive.write_text(f"{os.getpid()}\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.alive.touch()

    def finish(self) -> None:
        self._stop.set()
        self.done.write_text(f"{os.getpid()}\n")


def wait_for(folder: Path, shards: list[Shard], timeout_s: float, poll_s: float = 0.5) -> list[Shard]:
    """Wait until each shard wrote ``.done``; returns those given up on (silent for ``timeout_s``)."""
    started, waiting = time.monotonic(), list(shards)
    while waiting:
        waiting = [s for s in waiting if not part_file(folder, s).with_suffix(".done").exists()]
        silent = [s for s in waiting if _silent_for(part_file(folder, s).with_suffix(".alive"), started) > timeout_s]
        if waiting and len(silent) == len(waiting):
            return silent
        if waiting:
            time.sleep(poll_s)
    return []


def _silent_for(alive: Path, started: float) -> float:
    try:
        return time.time() - alive.stat().st_mtime
    except FileNotFoundError:
        return time.monotonic() - started


@dataclass
class Merged:
    """A merged run: its plan, its records in plan order, and the pairs no process recorded."""

    plan: Plan
    records: list[dict[str, Any]]
    missing: list[Pair]


def merge(folders: list[Path], out: Path) -> Merged:
    """Merge the results of ``folders`` (one run's, on one or several hosts) into ``out/results.jsonl``."""
    plan = _common_plan(folders)
    from agent.evaluate import ResultsFile

    wanted, found = set(plan.pairs()), dict[Pair, dict[str, Any]]()
    for folder in folders:
        for file in result_files(folder):
            for record in ResultsFile(file).read():
                pair = (record.get("model"), record.get("id"))
                if pair in wanted:
                    found.setdefault(pair, record)
    ordered = [found[p] for p in plan.pairs() if p in found]
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in ordered))
    if not (out / PLAN).exists():
        plan.write(out)
    return Merged(plan, ordered, [p for p in plan.pairs() if p not in found])


def _common_plan(folders: list[Path]) -> Plan:
    plans = []
    for folder in folders:
        if not folder.is_dir():
            raise BadInputError(f"{folder} is not a results folder")
        plan = Plan.read(folder)
        if plan is None:
            raise BadInputError(f"{folder} holds no {PLAN}; is it an 'optiq eval' results folder?")
        plans.append(plan)
    for folder, plan in zip(folders[1:], plans[1:]):
        if plan != plans[0]:
            raise BadInputError(
                f"{folder} is a run of other models or tasks than {folders[0]}; merge one run's folders"
            )
    return plans[0]


def describe_missing(missing: list[Pair], limit: int = 10) -> str:
    """``3 task(s) not recorded: model/id, ...``."""
    shown = ", ".join(f"{model}/{entry}" for model, entry in missing[:limit])
    more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
    return f"{len(missing)} task(s) not recorded: {shown}{more}"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
