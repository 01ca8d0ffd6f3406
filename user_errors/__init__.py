"""The one exception every layer raises for a mistake the user can fix (runs/entry_points.py turns it into exit 2)."""

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it, in one sentence."""
