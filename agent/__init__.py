"""The conversation: chat rendering, tool-call parsing, the loop, headless runs, evaluation, the CLI."""
