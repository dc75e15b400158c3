"""What /tools, /model and /save produce: Markdown about the tools and the model, and the session files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.engine import Engine
from agent.session import SessionWriter, export_markdown, new_session_path
from tui.widgets.status_bar import quant_mix


def model_metadata(engine: Engine) -> dict:
    """The built model's ``optiq/metadata.json``, or {} for a model that has none."""
    file = Path(engine.model_path) / "optiq" / "metadata.json"
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def tools_markdown(registry: Any, confinement: dict[str, str] | None = None) -> str:
    """Every tool with its description, flags and argument schema; first the sandbox's OS layers."""
    parts = ["## Tools"]
    if confinement is not None:
        rows = "\n".join(f"- **{layer}**: {value}" for layer, value in confinement.items())
        parts.append(f"Sandbox confinement (`run_python`, `run_shell`):\n\n{rows}")
    for tool in registry:
        source = getattr(tool, "source", "builtin")
        flags = [
            flag
            for flag, on in (
                (source, source != "builtin"),
                ("asks for approval", tool.side_effects),
                ("sandboxed", tool.sandboxed),
            )
            if on
        ]
        parts.append(f"### {tool.name}" + (f" ({', '.join(flags)})" if flags else ""))
        parts.append(tool.description)
        parts.append("```json\n" + json.dumps(tool.parameters, indent=2) + "\n```")
    return "\n\n".join(parts)


def model_markdown(engine: Engine) -> str:
    """Which model runs, where it came from and how it was quantized."""
    meta = model_metadata(engine)
    mtp = "on" if engine.mtp_enabled else ("off" if engine.mtp_available else "not available")
    rows = [
        ("model", Path(engine.model_path).name),
        ("folder", str(engine.model_path)),
        ("built from", meta.get("base", "not built by optiq (loaded as it is)")),
        ("quantization", quant_mix(meta.get("counts")) or "none"),
        ("method", str(meta.get("method", "—"))),
        ("MTP", f"{mtp} (depth {engine.mtp_depth})"),
    ]
    if (decision := engine.mtp_decision) is not None:
        rows.append(("MTP policy", decision.reason))
    return "## Model\n\n" + "\n".join(f"- **{key}**: {value}" for key, value in rows) + "\n"


def save_session(events: list[Any], path: Path | None = None) -> Path:
    """Write the session's events as a JSONL trace and a Markdown transcript beside it; returns the trace's path."""
    path = path or new_session_path()
    with SessionWriter(path) as writer:
        for event in events:
            writer.write(event)
    path.with_suffix(".md").write_text(export_markdown(events), encoding="utf-8")
    return path
