"""``python -m nima_rt`` runs the CLI."""

from .cli import main

main()
