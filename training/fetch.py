"""Get the official IMDB dataset onto disk in the layout the pipeline reads.

For users on the internet: downloads ``aclImdb_v1.tar.gz`` from Stanford and checks its sha256;
offline users pass a local archive or an extracted ``aclImdb`` folder instead. Either way the
result is ``train.csv.gz`` (25k labelled), ``train_unsup.csv.gz`` (50k unlabelled) and
``test.csv.gz`` (25k labelled, the official test split: evaluate on it, never tune on it).

    python -m training.fetch --dest data/imdb                 # download + verify + convert
    python -m training.fetch --source aclImdb_v1.tar.gz --dest data/imdb
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Sequence

from training.data import DataError, read_aclimdb

log = logging.getLogger(__name__)

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"


def sha256_of(path: Path) -> str:
    """Return a file's sha256 hex digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its checksum."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not sys.stderr.isatty()) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    tmp.write(block)
                    bar.update(len(block))
    actual = sha256_of(Path(tmp.name))
    if sha256 and actual != sha256:
        os.unlink(tmp.name)
        raise DataError(f"{url}: sha256 {actual} does not match the published {sha256}; download discarded")
    os.replace(tmp.name, dest)
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
        tmp = dest_dir / f".{name}.tmp"
        rows.sort_values("id").to_csv(tmp, index=False, compression="gzip")
        os.replace(tmp, dest_dir / name)
        counts[name] = len(rows)
    log.info("wrote %s to %s", counts, dest_dir)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fetch CLI."""
    parser = argparse.ArgumentParser(prog="python -m training.fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get("SENTIMENT_DATA_DIR", "data/imdb")),
                        help="folder to write the CSVs into (default: $SENTIMENT_DATA_DIR or data/imdb)")
    parser.add_argument("--source", type=Path, default=None,
                        help="local aclImdb_v1.tar.gz or extracted aclImdb folder (skips the download)")
    parser.add_argument("--url", default=URL, help="where to download the archive from")
    parser.add_argument("--sha256", default=None,
                        help="expected sha256 of the archive (default: the published one for downloads; "
                             "no check for --source unless given; '' skips the check)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        source = args.source
        if source is None:
            expected = SHA256 if args.sha256 is None else args.sha256
            source = download(args.url, args.dest / "aclImdb_v1.tar.gz", expected or None)
        elif args.sha256 and source.is_file() and sha256_of(source) != args.sha256:
            raise DataError(f"{source}: sha256 does not match {args.sha256}")
        convert(source, args.dest)
    except (DataError, OSError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
