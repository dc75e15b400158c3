"""An OpenAI-compatible chat completions server (``optiq serve``) on this project's parser, validator and engine."""

from agent.serve.app import Server
from agent.serve.service import ServeConfig, Service

__all__ = ["ServeConfig", "Server", "Service"]
