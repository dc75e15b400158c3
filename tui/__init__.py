"""The Textual app: screens and widgets over the agent's event stream."""

from tui.app import OptiqApp

__all__ = ["OptiqApp"]
