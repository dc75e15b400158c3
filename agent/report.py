"""Evaluation results as a summary (per model: per category and overall) and a comparison table."""

from __future__ import annotations

from typing import Any


def summarize(records: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """``{"models": {label: {...}}, "categories": [...]}`` from ``results.jsonl`` records."""
    categories = sorted({r["category"] for r in records if not r.get("error")})
    by_model: dict[str, Any] = {}
    for model in models:
        mine = [r for r in records if r["model"] == model]
        by_model[model] = _model_summary(mine, categories)
    summary = {"categories": categories, "models": by_model}
    return summary


def _model_summary(records: list[dict[str, Any]], categories: list[str]) -> dict[str, Any]:
    """Scores over the tasks that ran; tasks that could not run (bad entry, model failed) count as errors."""
    ran = [r for r in records if not r.get("error")]
    by_category = {}
    for category in categories:
        rows = [r for r in ran if r["category"] == category]
        if rows:
            by_category[category] = _score(rows)
    calls = sum(r["calls"] for r in ran)
    decode_s = sum(r["decode_s"] for r in ran)
    return {
        "categories": by_category,
        "overall": _score(ran),
        "invalid_call_share": sum(r["invalid_calls"] for r in ran) / calls if calls else 0.0,
        "mean_steps": sum(r["steps"] for r in ran) / len(ran) if ran else 0.0,
        "tok_s": sum(r["tokens"] for r in ran) / decode_s if decode_s else 0.0,
        "errors": sum(bool(r.get("error")) for r in records),
        "error_ids": [r["id"] for r in records if r.get("error")],
    }


def _score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    passed = sum(bool(r["passed"]) for r in rows)
    return {"n": len(rows), "passed": passed, "accuracy": passed / len(rows) if rows else 0.0}


def format_table(summary: dict[str, Any]) -> str:
    """A Markdown table: a row per model, accuracy per category and overall, invalid calls, steps, tok/s."""
    categories = summary["categories"]
    header = ["model", *categories, "overall", "invalid calls", "mean steps", "tok/s", "errors"]
    rows = [header, ["---"] * len(header)]
    for model, s in summary["models"].items():
        cells = [_percent(s["categories"].get(c)) for c in categories]
        rows.append(
            [
                model,
                *cells,
                _percent(s["overall"]),
                f"{100 * s['invalid_call_share']:.1f}%",
                f"{s['mean_steps']:.2f}",
                f"{s['tok_s']:.1f}",
                str(s["errors"]),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines[1] = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join(lines)


def _percent(score: dict[str, Any] | None) -> str:
    if not score:
        return "-"
    return f"{100 * score['accuracy']:.1f}% ({score['passed']}/{score['n']})"
