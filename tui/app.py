"""The ``optiq`` terminal app: opens the chat at once and builds or loads the model behind it."""

from __future__ import annotations

from textual.app import App

from tui.screens.chat import ChatScreen, Launch, TrustQuestion


class OptiqApp(App[None]):
    """The agent in the terminal; ``launch`` builds or loads the model and returns the agent.

    ``trust``: a question asked before loading (a workspace's MCP servers file, used once approved).
    """

    TITLE = "optiq"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, launch: Launch, trust: TrustQuestion | None = None) -> None:
        super().__init__()
        self.chat = ChatScreen(launch, trust)

    def on_mount(self) -> None:
        # pushed rather than returned by get_default_screen: only pushed screens load their CSS_PATH
        self.push_screen(self.chat)

    @property
    def agent(self):
        """The agent once the model is loaded, else None."""
        return self.chat.agent

    async def action_quit(self) -> None:
        """Quit at once; a running generation is stopped first."""
        self.chat.shutdown()
        self.exit()
