"""A request shaped like Claude Code's: two system blocks with cache_control, 20+ tools with draft-07 schemas, streaming.

Claude Code's own requests are larger (its system prompt and tools run to tens of thousands of
tokens); this one keeps their shape at a size that fits the embedded model's 4096-token context.
"""

from __future__ import annotations

SCHEMA = "http://json-schema.org/draft-07/schema#"
CACHE = {"type": "ephemeral"}


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    if name in ("Bash", "Read", "Edit"):
        schema["$schema"] = SCHEMA  # Claude Code marks every schema so; a few carry it here, for room
    return {"name": name, "description": description, "input_schema": schema}


def _text(description: str) -> dict:
    return {"type": "string"}  # Claude Code describes each property; the embedded model's context has no room for it


TOOLS = [
    _tool(
        "Task",
        "Launch a new agent for a complex, multi-step task.",
        {
            "description": _text("A short description"),
            "prompt": _text("The task"),
            "subagent_type": _text("The agent type"),
        },
        ["description", "prompt", "subagent_type"],
    ),
    _tool(
        "Bash",
        "Run a bash command with an optional timeout.",
        {
            "command": _text("The command"),
            "timeout": {"type": "number", "description": "Milliseconds"},
            "description": _text("What it does"),
            "run_in_background": {"type": "boolean"},
        },
        ["command"],
    ),
    _tool(
        "Glob", "Find files by glob pattern.", {"pattern": _text("The glob"), "path": _text("Directory")}, ["pattern"]
    ),
    _tool(
        "Grep",
        "Search file contents with ripgrep.",
        {
            "pattern": _text("Regex"),
            "path": _text("Where"),
            "glob": _text("Filter"),
            "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
            "-i": {"type": "boolean"},
            "head_limit": {"type": "number"},
        },
        ["pattern"],
    ),
    _tool("ExitPlanMode", "Leave plan mode once the plan is ready.", {"plan": _text("The plan")}, ["plan"]),
    _tool(
        "Read",
        "Read a file from the local filesystem.",
        {"file_path": _text("Absolute path"), "offset": {"type": "number"}, "limit": {"type": "number"}},
        ["file_path"],
    ),
    _tool(
        "Edit",
        "Replace exact text in a file.",
        {
            "file_path": _text("Absolute path"),
            "old_string": _text("Text to replace"),
            "new_string": _text("Replacement"),
            "replace_all": {"type": "boolean", "default": False},
        },
        ["file_path", "old_string", "new_string"],
    ),
    _tool(
        "MultiEdit",
        "Several edits to one file at once.",
        {
            "file_path": _text("Absolute path"),
            "edits": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"old_string": {"type": "string"}, "new_string": {"type": "string"}},
                    "required": ["old_string", "new_string"],
                    "additionalProperties": False,
                },
            },
        },
        ["file_path", "edits"],
    ),
    _tool(
        "Write",
        "Write a file to the local filesystem.",
        {"file_path": _text("Absolute path"), "content": _text("The content")},
        ["file_path", "content"],
    ),
    _tool(
        "NotebookEdit",
        "Replace a cell of a Jupyter notebook.",
        {
            "notebook_path": _text("Absolute path"),
            "cell_id": _text("The cell"),
            "new_source": _text("New source"),
            "edit_mode": {"type": "string", "enum": ["replace", "insert", "delete"]},
        },
        ["notebook_path", "new_source"],
    ),
    _tool(
        "WebFetch",
        "Fetch a URL and process it with a prompt.",
        {"url": {"type": "string", "format": "uri"}, "prompt": _text("What to extract")},
        ["url", "prompt"],
    ),
    _tool(
        "TodoWrite",
        "Create and manage a structured task list.",
        {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "minLength": 1},
                        "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                        "activeForm": {"type": "string"},
                    },
                    "required": ["content", "status", "activeForm"],
                    "additionalProperties": False,
                },
            }
        },
        ["todos"],
    ),
    _tool(
        "WebSearch",
        "Search the web.",
        {
            "query": {"type": "string", "minLength": 2},
            "allowed_domains": {"type": "array", "items": {"type": "string"}},
        },
        ["query"],
    ),
    _tool(
        "BashOutput",
        "Read output of a background shell.",
        {"bash_id": _text("The shell"), "filter": _text("Regex")},
        ["bash_id"],
    ),
    _tool("KillShell", "Kill a background shell.", {"shell_id": _text("The shell")}, ["shell_id"]),
    _tool("SlashCommand", "Run a slash command.", {"command": _text("The command")}, ["command"]),
    _tool("mcp__git__status", "Show the working tree status.", {"repo_path": _text("Repository")}, ["repo_path"]),
    _tool(
        "mcp__git__diff",
        "Show changes.",
        {"repo_path": _text("Repository"), "target": _text("Commit or branch")},
        ["repo_path"],
    ),
    _tool(
        "mcp__git__log",
        "Show commit logs.",
        {"repo_path": _text("Repository"), "max_count": {"type": "integer", "default": 10}},
        ["repo_path"],
    ),
    _tool(
        "mcp__fetch__fetch",
        "Fetch a URL as markdown.",
        {"url": _text("The URL"), "max_length": {"type": "integer"}},
        ["url"],
    ),
    _tool("mcp__time__now", "The current time in a timezone.", {"timezone": _text("IANA name")}, ["timezone"]),
    _tool("mcp__memory__search", "Search the knowledge graph.", {"query": _text("Query")}, ["query"]),
]

INSTRUCTIONS = """You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions below and the tools available to you to assist the user.

# Tone and style
You should be concise, direct, and to the point. Your output will be displayed on a command line interface. Answer the user's question directly, without elaboration, explanation, or details. One word answers are best. Avoid introductions, conclusions, and explanations.

# Proactiveness
You are allowed to be proactive, but only when the user asks you to do something. Do what has been asked; nothing more, nothing less.

# Following conventions
When making changes to files, first understand the file's code conventions. Mimic code style, use existing libraries and utilities, and follow existing patterns. Never assume that a given library is available. Always follow security best practices.

# Task Management
Use the TodoWrite tool to manage and plan tasks. Mark todos as completed as soon as you are done with a task.

# Doing tasks
The user will primarily request you perform software engineering tasks: solving bugs, adding new functionality, refactoring code, explaining code. Use the search tools to understand the codebase and the user's query. Implement the solution using all tools available to you. Verify the solution if possible with tests. Run the lint and typecheck commands when you have completed a task.

# Tool usage policy
When doing file search, prefer to use the Task tool in order to reduce context usage. You have the capability to call multiple tools in a single response. When multiple independent pieces of information are requested, batch your tool calls together for optimal performance.

<env>
Working directory: /home/user/project
Is directory a git repo: Yes
Platform: linux
</env>"""


def claude_code_request(model: str, question: str) -> dict:
    """The body Claude Code sends for one turn (``stream`` on), against ``model``."""
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "temperature": 1,
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": CACHE,
            },
            {"type": "text", "text": INSTRUCTIONS, "cache_control": CACHE},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<system-reminder>\nAs you answer the user's questions, you can use the following context: the project uses Python 3.11.\n</system-reminder>",
                    },
                    {"type": "text", "text": question, "cache_control": CACHE},
                ],
            },
        ],
        "tools": TOOLS,
        "metadata": {"user_id": "user_0123456789abcdef_account__session_00000000-0000-0000-0000-000000000000"},
    }
