"""Errors the runtime raises at its boundary, each with a message a user can act on."""


class OptiqError(Exception):
    """A failure the user can do something about; the CLI prints it as one line."""

    exit_code = 1


class BadInputError(OptiqError):
    """The user's input (a path, a file, a flag's value) is unusable: exit status 2."""

    exit_code = 2
