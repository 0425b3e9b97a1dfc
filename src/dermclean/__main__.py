"""``python -m dermclean``: the same command line as ``dermclean``."""

from dermclean.cli import app

app(prog_name="dermclean")
