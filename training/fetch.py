"""Get the official IMDB dataset onto disk in the layout the pipeline reads.

For users on the internet: downloads ``aclImdb_v1.tar.gz`` from Stanford and checks its sha256;
offline users pass a local archive or an extracted ``aclImdb`` folder instead. Either way the
result is ``train.csv.gz`` (25k labelled), ``train_unsup.csv.gz`` (50k unlabelled) and
``test.csv.gz`` (25k labelled, the official test split: evaluate on it, never tune on it).

    python -m training.fetch        # download + verify + convert into $SENTIMENT_DATA_DIR
    python -m training.fetch --source aclImdb_v1.tar.gz --dest data/imdb
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.request
from pathlib import Path
from typing import Sequence

from registry.cli import DocHelpFormatter, configure_logging
from registry.files import atomic_path, file_sha256
from training.data import DataError, default_data_dir, read_aclimdb

log = logging.getLogger(__name__)

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"


def download(url: str, dest: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its checksum; a mismatch leaves nothing."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not sys.stderr.isatty()
            ) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        actual = file_sha256(tmp)
        if sha256 and actual != sha256:
            raise DataError(
                f"{url}: sha256 {actual} does not match the published {sha256}; download discarded"
            )
    return dest


def convert(source: Path, dest_dir: Path) -> dict[str, int]:
    """Write train.csv.gz, train_unsup.csv.gz and test.csv.gz from an aclImdb archive or folder."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    frame = read_aclimdb(source)
    counts = {}
    for name, rows in (
        ("train.csv.gz", frame[(frame["split"] == "train") & frame["label"].notna()]),
        ("train_unsup.csv.gz", frame[(frame["split"] == "train") & frame["label"].isna()]),
        ("test.csv.gz", frame[(frame["split"] == "test") & frame["label"].notna()]),
    ):
        if name == "train_unsup.csv.gz":
            rows = rows[["id", "text"]]
        else:
            rows = rows[["id", "rating", "label", "text"]].astype({"label": int})
        with atomic_path(dest_dir / name) as tmp:
            rows.sort_values("id").to_csv(tmp, index=False, compression="gzip")
        counts[name] = len(rows)
    log.info("wrote %s to %s", counts, dest_dir)
    return counts


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser."""
    parser = argparse.ArgumentParser(
        prog="python -m training.fetch", description=__doc__, formatter_class=DocHelpFormatter
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=default_data_dir(),
        help="folder to write the CSVs into, where training reads them "
        "(default: $SENTIMENT_DATA_DIR or ../shared/data/imdb)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="local aclImdb_v1.tar.gz or extracted aclImdb folder (skips the download)",
    )
    parser.add_argument("--url", default=URL, help="where to download the archive from")
    parser.add_argument(
        "--sha256",
        default=None,
        help="expected sha256 of the archive (default: the published one for downloads; "
        "no check for --source unless given; '' skips the check)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fetch CLI; exit 2 on a bad archive or an unwritable destination."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        source = args.source
        if source is None:
            expected = SHA256 if args.sha256 is None else args.sha256
            source = download(args.url, args.dest / "aclImdb_v1.tar.gz", expected or None)
        elif args.sha256 and source.is_file() and file_sha256(source) != args.sha256:
            raise DataError(f"{source}: sha256 does not match {args.sha256}")
        convert(source, args.dest)
    except (DataError, OSError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
