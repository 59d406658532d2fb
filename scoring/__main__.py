"""Entry point: ``python -m scoring --input reviews.parquet --output scored/`` (see ``--help``)."""

from scoring.cli import main

if __name__ == "__main__":  # guarded: spawned worker processes import this module too
    raise SystemExit(main())
