"""Where `optiq eval` writes (the results folder) and what it prints (the summary table), for one
process and for ranks alike (``eval`` and ``eval_ranks`` both import it; neither imports the other's
helpers)."""

RESULTS_ROOT = "optiq-eval"


def out_folder(out, resume):
    """The results folder: ``--out``, the latest run's with ``--resume``, else a new one named by the time."""
    import time
    from pathlib import Path

    from optiq_runtime.errors import BadInputError

    if out:
        folder = Path(out).expanduser()
    elif resume:
        runs = sorted(p for p in Path(RESULTS_ROOT).glob("*") if p.is_dir())
        if not runs:
            raise BadInputError(f"--resume: no earlier run in {RESULTS_ROOT}/; give --out")
        folder = runs[-1]
    else:
        folder = Path(RESULTS_ROOT) / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def report(records, labels, out, as_json: bool) -> None:
    """Write ``summary.json`` beside the results and print the table (or the summary as JSON)."""
    import json

    from agent.report import format_table, summarize

    summary = summarize(records, labels)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary) if as_json else format_table(summary))
