"""`optiq eval` over several processes: ``mlx.launch`` ranks sharing one run, or one ``--shard I/N`` of it.

Part of the ``eval`` command (not a command of its own). Ranks meet twice at the start (rank 0's
results folder; what earlier runs finished) and never again: at the end rank 0 waits for the others'
``.done`` files, giving up on a rank silent for ``--peer-timeout``, and merges what the files hold.
When the launcher (``mlx.launch``, or ``--ranks``'s own) stops the run because a rank died, or
Ctrl-C interrupts it, rank 0 merges what is recorded and names the tasks that are missing.
"""

from __future__ import annotations

import secrets
import signal
import sys
from dataclasses import replace
from pathlib import Path

from agent.cli.eval_output import out_folder, report
from agent.evaluate import ResultsFile, evaluate
from agent.shard import (
    PARTS,
    Heartbeat,
    Plan,
    Shard,
    describe_missing,
    finished_pairs,
    merge,
    parse_shard,
    part_file,
    result_files,
    wait_for,
)
from optiq_runtime.errors import BadInputError
from optiq_runtime.progress import stderr_callback
from optiq_runtime.ranks import barrier, broadcast_bytes, count, world

TOKEN = "leader.token"


class Stopped(BaseException):
    """SIGTERM: ``mlx.launch`` and ``--ranks`` stop every rank when one exits with an error.

    A ``BaseException``, like ``KeyboardInterrupt``: a stop is not an error. As an ``Exception`` it was
    caught by the boundary that turns a failing tool into text the model reads (``agent.toolrun``) when
    it came while a tool ran, and rank 0 went on to the end and hung waiting for the dead rank."""


def run_sharded(args, entries, specs, extra_tools=()) -> int:
    """Run this process's share: a ``--shard`` of the run, or this rank's under ``mlx.launch``."""
    group = world()
    plan = Plan([s.label for s in specs], [e.id for e in entries])
    if args.shard:
        if group.size() > 1:
            raise BadInputError(
                "--shard is for processes a scheduler starts; under mlx.launch the ranks share the run themselves"
            )
        return _run_shard(args, entries, specs, plan, parse_shard(args.shard), extra_tools)
    return _run_ranks(args, entries, specs, plan, group, extra_tools)


def _run_shard(args, entries, specs, plan: Plan, shard: Shard, extra_tools=()) -> int:
    if not args.out:
        raise BadInputError(
            "--shard needs --out: the folder this shard writes (merge the shards' folders with 'optiq eval merge')"
        )
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _check_start(out, plan, args.resume, [part_file(out, shard)])
    plan.write(out)
    mine = shard.take(plan.pairs()) - finished_pairs(out)
    _run_share(out, shard, entries, specs, mine, extra_tools)
    sys.stderr.write(
        f"optiq eval: shard {shard.index}/{shard.count} recorded its {len(mine)} task(s) in {part_file(out, shard)}; "
        f"when every shard is done: optiq eval merge {out} [the other shards' folders]\n"
    )
    return 0


def _run_ranks(args, entries, specs, plan: Plan, group, extra_tools=()) -> int:
    rank, shard = group.rank(), Shard(group.rank(), group.size())
    chosen = str(out_folder(args.out, args.resume)) if rank == 0 else None
    out = Path(broadcast_bytes(chosen.encode() if chosen else None, group).decode())
    shared = _meet(out, plan, args.resume, group)
    finished = finished_pairs(out)
    barrier(group)  # every rank has read what earlier runs finished before any writes
    mine = shard.take([p for p in plan.pairs() if p not in finished])
    if rank != 0:
        _run_share(out, shard, entries, specs, mine, extra_tools)
        return 0
    signal.signal(signal.SIGTERM, _raise_stopped)
    interrupted = False
    try:
        _run_share(out, shard, entries, specs, mine, extra_tools)
        silent = (
            wait_for(out, [Shard(r, shard.count) for r in range(1, shard.count)], args.peer_timeout) if shared else []
        )
        if silent:
            sys.stderr.write(
                f"optiq eval: rank(s) {', '.join(str(s.index) for s in silent)} stopped reporting; merging without them\n"
            )
    except Stopped:
        sys.stderr.write(
            "optiq eval: stopped (SIGTERM: a rank exited, or the run was stopped); merging what was recorded\n"
        )
    except KeyboardInterrupt:
        interrupted = True
        sys.stderr.write("optiq eval: interrupted; merging what was recorded\n")
    status = _merge_here(out, plan, args.json, shared)
    return 130 if interrupted else status


def _meet(out: Path, plan: Plan, resume: bool, group) -> bool:
    """Rank 0 checks and writes the plan; True when every rank sees rank 0's folder (a shared file system)."""
    token = secrets.token_hex(8) if group.rank() == 0 else None
    if token:
        _check_start(out, plan, resume, result_files(out))
        plan.write(out)
        part_file(out, Shard(0, 1)).parent.joinpath(TOKEN).write_text(token)
    token = broadcast_bytes(token.encode() if token else None, group).decode()
    marker = out / PARTS / TOKEN
    sees = marker.is_file() and marker.read_text() == token
    if not sees:  # this host has its own folder: make it mergeable on its own
        out.mkdir(parents=True, exist_ok=True)
        plan.write(out)
    return count(sees, group) == group.size()


def _check_start(out: Path, plan: Plan, resume: bool, files: list[Path]) -> None:
    earlier = Plan.read(out)
    if earlier is not None and earlier != plan and any(f.exists() and f.stat().st_size for f in files):
        raise BadInputError(f"{out} holds a run of other models or tasks; give another --out")
    if not resume and any(f.exists() and f.stat().st_size for f in files):
        raise BadInputError(f"{out} already holds results; pass --resume to continue them, or another --out")


def _run_share(out: Path, shard: Shard, entries, specs, mine: set, extra_tools=()) -> None:
    beat = Heartbeat(out, shard)
    progress = stderr_callback()
    evaluate(
        entries,
        specs,
        ResultsFile(part_file(out, shard)),
        progress=lambda e: progress(replace(e, stage=f"[{shard.index}] {e.stage}")),
        only=mine,
        extra_tools=extra_tools,
    )
    beat.finish()


def _merge_here(out: Path, plan: Plan, as_json: bool, shared: bool) -> int:
    merged = merge([out], out)
    report(merged.records, plan.models, out, as_json)
    if not shared:
        sys.stderr.write(
            f"optiq eval: some ranks wrote to their own host's {out}; copy those folders here and run: optiq eval merge {out} FOLDER...\n"
        )
    if merged.missing:
        sys.stderr.write(f"optiq eval: {describe_missing(merged.missing)}; run them with --resume --out {out}\n")
        return 1
    return 0


def _raise_stopped(signum, frame):
    raise Stopped()
