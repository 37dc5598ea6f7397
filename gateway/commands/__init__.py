"""CLI commands that grew beyond gateway/cli.py, one module per command or group.

Each module defines a click command (or group); gateway/cli.py registers it with
``main.add_command`` (or ``journal.add_command``) at its end.
"""
