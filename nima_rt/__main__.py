"""``python -m nima_rt`` runs the CLI."""

from nima_rt.cli import main

main()
