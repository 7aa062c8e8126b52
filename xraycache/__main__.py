"""``python -m xraycache``: the same as the ``xraycache`` command."""

from .cli import app

app(prog_name="xraycache")
