"""Dockerfiles: pinned bases, non-root, sources that exist and reach the build context, slim api image."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.packaging.helpers import ROOT, DockerIgnore, dockerfiles, load_docker_module, parse_dockerfile

sizes = load_docker_module("estimate_sizes")

DOCKERFILES = dockerfiles()
IMAGES = {image.dockerfile: image for image in sizes.IMAGES}
VERSION_TAG = re.compile(r"\d+\.\d+\.\d+")  # a full major.minor.patch in the tag


def is_pinned(image: str) -> bool:
    """True for ``repo:tag`` with a major.minor.patch tag (not latest) or a ``@sha256:`` digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (a ':' only in a registry port)
        return False
    return tag != "latest" and bool(VERSION_TAG.search(tag))


def test_every_image_has_a_dockerfile() -> None:
    assert {p.relative_to(ROOT).as_posix() for p in DOCKERFILES} == set(IMAGES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(path: Path) -> None:
    parsed = parse_dockerfile(path)
    stage_names = {s.name for s in parsed.stages if s.name}
    assert len(parsed.stages) >= 2, "multi-stage build expected (builder + runtime)"
    for stage in parsed.stages:
        if stage.base in stage_names:
            continue
        assert is_pinned(stage.base), f"{path.name}: FROM {stage.base!r} is not pinned to a version tag"
        assert stage.base.startswith("python:3.11."), f"{path.name}: base {stage.base} is not Python 3.11"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_non_root(path: Path) -> None:
    final = parse_dockerfile(path).final
    users = final.all("USER")
    assert users, f"{path.name}: the final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0", ""), f"{path.name}: runs as {user!r}"
    # Nothing after the last USER switches back or runs as root.
    after = [i for i in final.instructions if i.line > users[-1].line]
    assert not [i for i in after if i.keyword == "RUN"], f"{path.name}: RUN after the final USER"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_in_the_build_context(path: Path) -> None:
    ignore = DockerIgnore.load()
    copies = parse_dockerfile(path).copies()
    assert copies
    for _, instruction in copies:
        flags, words = instruction.flags_and_args()
        if "from" in flags:
            continue
        assert instruction.keyword == "COPY", f"{path.name}:{instruction.line}: use COPY, not ADD"
        for source in words[:-1]:
            src = ROOT / source
            assert src.exists(), f"{path.name}:{instruction.line}: COPY source {source} does not exist"
            files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
            sent = [f for f in files if "__pycache__" not in f.parts and f.suffix != ".pyc"]
            assert sent, f"{path.name}: {source} is empty"
            for f in sent:
                rel = f.relative_to(ROOT).as_posix()
                assert not ignore.excluded(rel), (
                    f"{path.name}: {rel} (COPY {source}) is excluded by .dockerignore"
                )


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignore = DockerIgnore.load()
    for rel in (
        ".venv/bin/python",
        ".git/HEAD",
        "models/sentiment/1/model.onnx",
        "data/imdb/train.csv.gz",
        "runs/full-train-1.log",
        "tests/conftest.py",
        "service/__pycache__/app.cpython-311.pyc",
        "docker-compose.yml",
        "docker/estimate_sizes.py",
    ):
        assert ignore.excluded(rel), f"{rel} would be sent to the Docker build context"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_installs_its_own_requirements_into_a_venv_with_constraints(path: Path) -> None:
    image = IMAGES[path.relative_to(ROOT).as_posix()]
    parsed = parse_dockerfile(path)
    runs = " ".join(i.args for s in parsed.stages[:-1] for i in s.all("RUN"))
    wanted = Path(image.requirements).name
    assert re.search(rf"-r\s+\S*/{re.escape(wanted)}\b", runs), (
        f"{path.name} does not install {image.requirements}"
    )
    assert "-c /tmp/requirements/constraints.txt" in runs
    others = {Path(i.requirements).name for i in sizes.IMAGES} - {wanted}
    assert not [o for o in others if re.search(rf"/{re.escape(o)}\b", runs)]
    final_runs = " ".join(i.args for i in parsed.final.all("RUN"))
    assert "pip install" not in final_runs, "install in the builder stage, copy the venv"
    assert any("--from=builder" in i.args and "/opt/venv" in i.args for i in parsed.final.all("COPY"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copies_only_the_code_of_its_image(path: Path) -> None:
    image = IMAGES[path.relative_to(ROOT).as_posix()]
    copied = set()
    for _, instruction in parse_dockerfile(path).copies():
        flags, words = instruction.flags_and_args()
        if "from" not in flags:
            copied |= {w.strip("/").split("/")[0] for w in words[:-1]}
    assert copied - {"requirements", "docker"} == set(image.code)


def test_api_image_is_slim_and_checks_readiness() -> None:
    parsed = parse_dockerfile(ROOT / "docker/Dockerfile.api")
    text = (ROOT / "docker/Dockerfile.api").read_text().lower()
    assert "requirements/api.txt" in text
    for banned in ("tensorflow", "training/", "scoring/", "train.txt", "scoring.txt"):
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert banned not in body, f"Dockerfile.api mentions {banned}"
    (health,) = parsed.final.all("HEALTHCHECK")
    assert "/readyz" in health.args and "urllib.request" in health.args
    assert "curl" not in health.args and "wget" not in health.args
    cmd = parsed.final.all("CMD")[-1].json_or_shell()
    assert cmd == ["gunicorn", "-c", "service/gunicorn.conf.py", "service.app:create_app()"]
    env = " ".join(i.args for i in parsed.final.all("ENV"))
    assert "SENTIMENT_RUNTIME=onnx" in env and "SENTIMENT_MODEL_DIR=/models" in env


def test_api_healthcheck_command_is_valid_python() -> None:
    (health,) = parse_dockerfile(ROOT / "docker/Dockerfile.api").final.all("HEALTHCHECK")
    exec_form = health.args[health.args.index("CMD") + 3 :].strip()
    argv = json.loads(exec_form)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_scripts_are_copied_and_executable(path: Path) -> None:
    final = parse_dockerfile(path).final
    destinations = {}
    for instruction in final.all("COPY"):
        flags, words = instruction.flags_and_args()
        if "from" not in flags and len(words) == 2:
            destinations[words[1]] = words[0]
    for entry in final.all("ENTRYPOINT"):
        program = entry.json_or_shell()[0]
        assert program in destinations, f"{path.name}: ENTRYPOINT {program} is not COPYed"
        source = ROOT / destinations[program]
        assert source.is_file() and os.access(source, os.X_OK), f"{source} is not executable"
        assert source.read_text().startswith("#!/bin/sh"), "the slim image has /bin/sh (dash), not bash"
        assert any(program in i.args and "chmod" in i.args for i in final.all("RUN")), (
            f"{path.name}: chmod {program} (git may not keep the executable bit)"
        )
