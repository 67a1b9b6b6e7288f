"""``python -m mirage_data`` runs the ``mirage-data`` command."""

from mirage_data.cli import main

main(prog_name="mirage-data")
