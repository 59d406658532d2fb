"""Estimate the uncompressed size of each image from the packages installed in this environment.

Run it with the project's environment (it reads that interpreter's installed distributions)::

    .venv/bin/python docker/estimate_sizes.py            # plain table
    .venv/bin/python docker/estimate_sizes.py --markdown # the table in docs/deploy.md

For every image: the requirement closure of its ``requirements/*.txt`` (dependencies of
dependencies, environment markers evaluated for this interpreter and platform), the on-disk size
of every file those distributions installed (their ``RECORD``: code, compiled ``.pyc``, shared
libraries, console scripts), the project folders the Dockerfile copies, and an assumed base image
size. It is an estimate: the real image also has the venv's own files, per-layer overhead and
whatever ``pip`` resolves on the day of the build, and wheels for another platform differ in size.

No Docker engine is needed; no network is used. The closure helpers are also used by the
packaging tests (tests/packaging/).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Assumed uncompressed size of python:3.11.x-slim-bookworm (Debian slim + CPython 3.11), in MB.
BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_MB = 130.0
MB = 1_000_000


@dataclass(frozen=True)
class Image:
    """One image: its Dockerfile, requirement file and the project folders it copies."""

    name: str
    dockerfile: str
    requirements: str
    code: tuple[str, ...]


IMAGES = (
    Image(
        "api",
        "docker/Dockerfile.api",
        "requirements/api.txt",
        ("embeddings", "inference", "registry", "service"),
    ),
    Image(
        "scorer",
        "docker/Dockerfile.scorer",
        "requirements/scoring.txt",
        ("embeddings", "inference", "registry", "scoring"),
    ),
    Image(
        "trainer",
        "docker/Dockerfile.trainer",
        "requirements/train.txt",
        ("embeddings", "inference", "registry", "training"),
    ),
)


def read_requirements(path: str | Path) -> list[Requirement]:
    """Return the requirements of a pip requirements file, following ``-r`` includes."""
    path = Path(path)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    requirements: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            requirements += read_requirements(path.parent / line.split(None, 1)[1])
        elif line.startswith("-"):
            raise ValueError(f"{path}: unsupported option line {raw!r}")
        else:
            requirements.append(Requirement(line))
    return requirements


@dataclass
class Closure:
    """Installed distributions reachable from some requirements (and the ones not installed here)."""

    dists: dict[str, metadata.Distribution] = field(default_factory=dict)  # canonical name -> dist
    missing: set[str] = field(default_factory=set)  # required here but not installed

    def names(self) -> set[str]:
        """Return the canonical names of the installed distributions in the closure."""
        return set(self.dists)


def closure(requirements: list[Requirement]) -> Closure:
    """Return every distribution the requirements pull in, evaluating markers for this interpreter."""
    result = Closure()
    todo: list[tuple[Requirement, str]] = [(req, "") for req in requirements]
    seen_extras: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        wanted = {""} | {canonicalize_name(e) for e in req.extras}
        new = {e for e in wanted if (name, e) not in seen_extras}
        if not new:
            continue
        seen_extras.update((name, e) for e in new)
        try:
            dist = result.dists.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            result.missing.add(name)
            continue
        result.dists[name] = dist
        for spec in dist.requires or ():
            dep = Requirement(spec)
            for e in new:
                todo.append((dep, e))
    return result


def dist_size(dist: metadata.Distribution) -> int:
    """Return the bytes on disk of every file the distribution's RECORD lists."""
    total = 0
    for entry in dist.files or ():
        try:
            total += Path(entry.locate()).stat().st_size
        except OSError:
            total += entry.size or 0
    return total


def code_size(folders: tuple[str, ...]) -> int:
    """Return the bytes of the project files copied into an image (no caches)."""
    total = 0
    for folder in folders:
        for path in (PROJECT_ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                total += path.stat().st_size
    return total


@dataclass(frozen=True)
class Estimate:
    """The size estimate of one image, in bytes."""

    image: Image
    packages: int
    package_bytes: int
    code_bytes: int
    biggest: tuple[tuple[str, int], ...]
    missing: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return int(BASE_IMAGE_MB * MB) + self.package_bytes + self.code_bytes


def estimate(image: Image, top: int = 3) -> Estimate:
    """Estimate one image's size from this environment's installed distributions."""
    found = closure(read_requirements(image.requirements))
    sizes = {name: dist_size(dist) for name, dist in found.dists.items()}
    biggest = tuple(sorted(sizes.items(), key=lambda kv: -kv[1])[:top])
    return Estimate(
        image, len(sizes), sum(sizes.values()), code_size(image.code), biggest, tuple(sorted(found.missing))
    )


def _mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


def render(estimates: list[Estimate], markdown: bool) -> str:
    """Return the table (plain text or Markdown)."""
    header = (
        "image",
        "requirements",
        "packages",
        "installed packages",
        "project code",
        "base image",
        "estimated total",
        "largest packages",
    )
    rows = []
    for est in estimates:
        rows.append(
            (
                est.image.name,
                est.image.requirements,
                str(est.packages),
                _mb(est.package_bytes),
                f"{est.code_bytes / MB:.1f} MB",
                f"~{BASE_IMAGE_MB:.0f} MB",
                "~" + _mb(est.total_bytes),
                ", ".join(f"{name} {_mb(size)}" for name, size in est.biggest),
            )
        )
    lines = []
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(
        f"Estimate, not a measurement: base image {BASE_IMAGE} assumed ~{BASE_IMAGE_MB:.0f} MB "
        f"uncompressed; package sizes are the files installed in {sys.prefix} "
        f"(Python {sys.version.split()[0]}, {sys.platform}), MB = 10^6 bytes."
    )
    for est in estimates:
        if est.missing:
            lines.append(f"Not installed here, not counted ({est.image.name}): {', '.join(est.missing)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--top", type=int, default=3, help="largest packages listed per image")
    args = parser.parse_args(argv)
    print(render([estimate(image, args.top) for image in IMAGES], args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
