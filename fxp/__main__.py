"""``python -m fxp`` runs the command-line interface."""

from fxp.cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
