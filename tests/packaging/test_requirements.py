"""The per-image requirement files stay in step with requirements.txt and cover what the code imports."""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.helpers import ROOT, load_docker_module

sizes = load_docker_module("estimate_sizes")

SPLIT_FILES = sorted((ROOT / "requirements").glob("*.txt"))
IMAGE_FILES = {
    "api": "requirements/api.txt",
    "scorer": "requirements/scoring.txt",
    "trainer": "requirements/train.txt",
}
TRAINING_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "gensim", "tf-keras", "scikit-learn", "matplotlib"}
# requirements.txt entries no image needs (the test and browser tooling).
TEST_ONLY = {
    "pytest",
    "hypothesis",
    "requests",
    "selenium",
    "pyyaml",
    "jsonschema",
    "tritonclient",
    "moto",
    "ruff",
}
PROJECT_PACKAGES = {"embeddings", "inference", "registry", "service", "scoring", "training", "tests"}
# Imports inside functions that the image never reaches, by (file, top-level module).
OPTIONAL_IMPORTS = {
    ("inference/predictor.py", "tensorflow"),  # SENTIMENT_RUNTIME=savedmodel; the api/scorer use ONNX
    ("embeddings/word2vec.py", "gensim"),  # training only
}


def top_level_pins() -> dict[str, str]:
    """Return requirements.txt as {canonical name: version} (every line must be name==version)."""
    pins = {}
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def direct_lines(path: Path) -> list[Requirement]:
    """Return the requirement lines of one file (its -r includes not followed)."""
    reqs = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def test_split_files_exist() -> None:
    names = {p.name for p in SPLIT_FILES}
    assert {"base.txt", "api.txt", "scoring.txt", "train.txt", "constraints.txt"} <= names


@pytest.mark.parametrize("path", SPLIT_FILES, ids=lambda p: p.name)
def test_every_pin_equals_requirements_txt(path: Path) -> None:
    pins = top_level_pins()
    for req in direct_lines(path):
        name = canonicalize_name(req.name)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {req} is not pinned with =="
        if name in pins:
            assert specs[0].version == pins[name], (
                f"{path.name} pins {req.name}=={specs[0].version} but requirements.txt pins {pins[name]}"
            )
        else:
            # Only the generated constraints file may pin packages requirements.txt does not name.
            assert path.name == "constraints.txt", f"{path.name}: {req.name} is not in requirements.txt"


def test_image_files_only_name_requirements_txt_packages() -> None:
    pins = top_level_pins()
    for rel in IMAGE_FILES.values():
        for req in sizes.read_requirements(rel):
            assert canonicalize_name(req.name) in pins, f"{rel}: {req.name} is not in requirements.txt"


def test_every_runtime_dependency_is_in_some_image() -> None:
    named = set()
    for rel in IMAGE_FILES.values():
        named |= {canonicalize_name(r.name) for r in sizes.read_requirements(rel)}
    forgotten = set(top_level_pins()) - named - TEST_ONLY
    assert not forgotten, f"in requirements.txt but in no image's requirements file: {sorted(forgotten)}"


def test_api_requirements_have_no_training_stack() -> None:
    text = (ROOT / "requirements/api.txt").read_text().lower() + (
        ROOT / "requirements/base.txt"
    ).read_text().lower()
    for banned in ("tensorflow", "keras", "gensim"):
        assert banned not in "\n".join(line for line in text.splitlines() if not line.startswith("#")), banned
    found = sizes.closure(sizes.read_requirements("requirements/api.txt"))
    assert not found.names() & TRAINING_ONLY, (
        f"api image would install {sorted(found.names() & TRAINING_ONLY)}"
    )
    assert "pandas" not in found.names(), "the api does not need pandas"


def test_scorer_requirements_have_no_training_stack() -> None:
    found = sizes.closure(sizes.read_requirements("requirements/scoring.txt"))
    assert not found.names() & TRAINING_ONLY


def test_constraints_pin_every_image_requirement() -> None:
    constraints = {
        canonicalize_name(r.name): str(r.specifier)
        for r in direct_lines(ROOT / "requirements/constraints.txt")
    }
    for rel in IMAGE_FILES.values():
        for req in sizes.read_requirements(rel):
            name = canonicalize_name(req.name)
            assert constraints.get(name) == str(req.specifier), (
                f"requirements/constraints.txt does not pin {req} "
                "(run: .venv/bin/python docker/freeze_constraints.py)"
            )
    assert not {"pip", "setuptools", "wheel"} & set(constraints), "installer tooling must not be pinned"


# -- what the code imports is installed in its image -----------------------------------------------
def _imports(path: Path) -> list[tuple[str, bool]]:
    """Return (top-level module, at module level?) for every absolute import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name.split(".")[0], not nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], not nested))
            visit(child, inner)

    visit(tree, False)
    return found


@pytest.mark.parametrize("image", sizes.IMAGES, ids=lambda i: i.name)
def test_image_installs_every_module_its_code_imports(image) -> None:
    installed = sizes.closure(sizes.read_requirements(image.requirements)).names()
    providers = metadata.packages_distributions()
    missing = []
    for folder in image.code:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for module, _ in _imports(path):
                if module in sys.stdlib_module_names or module in PROJECT_PACKAGES or module == "__future__":
                    continue
                if (rel, module) in OPTIONAL_IMPORTS and image.name != "trainer":
                    continue
                dists = {canonicalize_name(d) for d in providers.get(module, [])}
                if not dists & installed:
                    missing.append(
                        f"{rel}: import {module} (from {sorted(dists) or 'nothing installed here'})"
                    )
    assert not missing, f"{image.requirements} lacks:\n" + "\n".join(missing)


def test_image_code_never_imports_a_project_package_it_does_not_copy() -> None:
    for image in sizes.IMAGES:
        for folder in image.code:
            for path in (ROOT / folder).rglob("*.py"):
                for module, _ in _imports(path):
                    if module in PROJECT_PACKAGES - {"tests"}:
                        assert module in image.code, (
                            f"{path.relative_to(ROOT)} imports {module}, "
                            f"which the {image.name} image does not copy"
                        )
