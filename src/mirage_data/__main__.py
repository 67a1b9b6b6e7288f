"""``python -m mirage_data`` runs the ``mirage-data`` command."""

from .cli import main

main(prog_name="mirage-data")
