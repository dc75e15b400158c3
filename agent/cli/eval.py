"""`optiq eval`: score one or more models on an evaluation suite and print a comparison table."""

from agent.cli.eval_output import RESULTS_ROOT, out_folder, report

HELP = "Score one or more models on an evaluation suite and print a comparison table."
# Shipped suites by name: the corpus generator's own, and requests written by hand the way people write.
SHIPPED_SUITES = {"generated": "eval_suite.jsonl", "people": "people_suite.jsonl"}
DEFAULT_SUITE = "generated"


def add_arguments(parser):
    parser.add_argument(
        "suite",
        nargs="*",
        metavar="SUITE | merge DIR...",
        help="JSONL suite file or folder, or a shipped suite's name: "
        f"{', '.join(SHIPPED_SUITES)} (default: {DEFAULT_SUITE}); "
        "'merge DIR...' merges sharded results folders",
    )
    parser.add_argument(
        "--model",
        action="append",
        help="model folder; repeat to compare (default: the OptiQ build of the embedded base)",
    )
    parser.add_argument(
        "--out", help=f"results folder (default: {RESULTS_ROOT}/<time>; with --resume, the latest there)"
    )
    parser.add_argument("--limit", type=int, help="only the first N entries of the suite")
    parser.add_argument("--resume", action="store_true", help="skip the tasks the results folder already holds")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    parser.add_argument(
        "--guide-calls",
        choices=["on", "off", "both"],
        default="on",
        help="limit tool-call names to the offered tools; 'both' scores each model both ways (default on)",
    )
    parser.add_argument(
        "--mcp",
        action="append",
        metavar="FILE",
        help="an MCP servers file whose tools agent tasks get beside the built-ins; repeatable "
        "(only these: the user's default file is not read, so scores do not depend on it)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="run only process I's share (0-based) of N; needs --out; merge with 'optiq eval merge'",
    )
    parser.add_argument(
        "--ranks",
        type=int,
        metavar="N",
        help="run as N ranks on this machine (MLX's ring backend, no mlx.launch needed); results as one process's",
    )
    parser.add_argument(
        "--peer-timeout",
        type=float,
        default=120.0,
        help="under mlx.launch: seconds rank 0 waits for a rank that stopped reporting before merging without it (default 120)",
    )


def run(args) -> int:
    import sys

    from agent.evaluate import ResultsFile, evaluate
    from agent.mcp_files import read_files
    from agent.shard import PARTS, Plan, merge
    from agent.suite import load_suite
    from optiq_runtime.errors import BadInputError
    from optiq_runtime.progress import stderr_callback
    from optiq_runtime.ranks import launched

    if args.suite[:1] == ["merge"]:
        if args.ranks is not None:
            raise BadInputError("optiq eval merge runs in one process; leave out --ranks")
        return _merge(args)
    if len(args.suite) > 1:
        raise BadInputError(f"give one SUITE (a file or a folder); got {len(args.suite)}: {' '.join(args.suite)}")
    if args.limit is not None and args.limit < 1:
        raise BadInputError(f"--limit must be at least 1; got {args.limit}")
    entries = load_suite(_suite_path(args.suite[0] if args.suite else None))[: args.limit]
    servers = read_files(args.mcp or [])  # a bad file is bad input before anything runs
    specs = _guided_specs(_model_specs(args.model), args.guide_calls)
    if _starts_ranks(args):
        from optiq_runtime.local_ranks import run_ranks

        return run_ranks([sys.executable, "-m", "agent.cli", *args.argv], args.ranks, label="optiq eval")
    if args.shard or launched():
        from agent.cli.eval_ranks import run_sharded

        with _mcp_tools(servers) as tools:
            return run_sharded(args, entries, specs, tools)
    out = out_folder(args.out, args.resume)
    results = ResultsFile(out / "results.jsonl")
    if not args.resume and results.path.exists() and results.path.stat().st_size:
        raise BadInputError(f"{out} already holds results; pass --resume to continue them, or another --out")
    plan = Plan([s.label for s in specs], [e.id for e in entries])
    if args.resume and (out / PARTS).is_dir() and Plan.read(out) == plan:
        merge([out], out)  # results a sharded run left in parts/: one process resumes after them too
    plan.write(out)
    sys.stderr.write(f"optiq eval: {len(entries)} entries x {len(specs)} model(s); results in {out}\n")
    with _mcp_tools(servers) as tools:
        evaluate(entries, specs, results, progress=stderr_callback(), extra_tools=tools)
    ids = {e.id for e in entries}
    records = [r for r in results.read() if r["id"] in ids]
    report(records, [spec.label for spec in specs], out, args.json)
    return 0


def _starts_ranks(args) -> bool:
    """Whether this process starts ``--ranks N`` ranks (it is not one of them, and N > 1)."""
    import os

    from optiq_runtime.errors import BadInputError
    from optiq_runtime.local_ranks import LAUNCHED_HERE
    from optiq_runtime.ranks import launched

    if args.ranks is None or os.environ.get(LAUNCHED_HERE):
        return False
    if args.ranks < 1:
        raise BadInputError(f"--ranks must be at least 1; got {args.ranks}")
    if args.shard:
        raise BadInputError(
            "--ranks starts the ranks itself; --shard is for processes a scheduler starts: give one of them"
        )
    if launched():
        raise BadInputError("--ranks starts the ranks itself; under mlx.launch leave it out")
    return args.ranks > 1


def _merge(args) -> int:
    """``optiq eval merge DIR...``: one results.jsonl, summary and table from sharded folders."""
    import sys
    from pathlib import Path

    from agent.shard import describe_missing, merge
    from optiq_runtime.errors import BadInputError

    folders = [Path(d).expanduser() for d in args.suite[1:]]
    if not folders:
        raise BadInputError("optiq eval merge needs at least one results folder")
    out = Path(args.out).expanduser() if args.out else folders[0]
    merged = merge(folders, out)
    report(merged.records, merged.plan.models, out, args.json)
    if merged.missing:
        sys.stderr.write(f"optiq eval: {describe_missing(merged.missing)}; run them with --resume --out {out}\n")
        return 1
    return 0


def _mcp_tools(servers):
    """The MCP servers' tools (named around the built-ins'), started once for the whole run; closing stops them."""
    from contextlib import contextmanager

    from agent.toolset import SessionTools
    from tools.builtin import builtin_tools
    from tools.registry import Registry

    @contextmanager
    def started():
        with SessionTools(Registry(builtin_tools()), servers).start() as tools:
            yield [tool for tool in tools.registry if tool.source.startswith("mcp:")]

    return started()


def _suite_path(suite):
    """The suite as given, or a shipped suite when it names one and no such path exists."""
    from pathlib import Path

    if suite is None or (suite in SHIPPED_SUITES and not Path(suite).exists()):
        return _shipped_suite(SHIPPED_SUITES[suite or DEFAULT_SUITE])
    return suite


def _shipped_suite(name):
    from pathlib import Path

    import optiq_runtime
    from optiq_runtime.errors import BadInputError

    path = Path(optiq_runtime.__file__).parent / "data" / name
    if not path.is_file():
        raise BadInputError(f"the shipped suite {path} is missing from this install; give a SUITE file")
    return path


def _model_specs(models):
    """A label and a loader per --model; labels are folder names, made unique when two clash."""
    from pathlib import Path

    from agent.evaluate import ModelSpec
    from agent.headless import load_engine

    if not models:
        return [ModelSpec("optiq (default)", lambda: load_engine(None))]
    names = [Path(m).name or m for m in models]
    labels = [name if names.count(name) == 1 else m for name, m in zip(names, models)]
    return [ModelSpec(label, lambda m=m: load_engine(m)) for label, m in zip(labels, models)]


def _guided_specs(specs, guide):
    """Each spec guided, unguided (labelled so), or both."""
    from dataclasses import replace

    unguided = [replace(s, label=f"{s.label} (unguided)", guide_calls=False) for s in specs]
    return {"on": specs, "off": unguided, "both": [s for pair in zip(specs, unguided) for s in pair]}[guide]
