"""The Textual app: screens and widgets over the agent's event stream."""
