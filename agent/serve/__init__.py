"""`optiq serve`: OpenAI chat completions and Anthropic Messages on this project's parser, validator and engine."""

from agent.serve.server import Server
from agent.serve.service import ServeConfig, Service

__all__ = ["ServeConfig", "Server", "Service"]
