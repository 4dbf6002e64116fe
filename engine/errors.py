"""Errors that carry a message meant for the user."""


class InputError(ValueError):
    """Bad user input; the message is one line that names the problem."""
