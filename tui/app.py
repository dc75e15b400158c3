"""The ``optiq`` terminal app: opens the chat at once and builds or loads the model behind it."""

from __future__ import annotations

from textual.app import App

from tui.screens.chat import ChatScreen, Launch


class OptiqApp(App[None]):
    """The agent in the terminal; ``launch`` builds or loads the model and returns the agent."""

    TITLE = "optiq"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, launch: Launch) -> None:
        super().__init__()
        self.chat = ChatScreen(launch)

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
