"""Readers for the deployment files: compose (with variable interpolation), Dockerfiles, .dockerignore.

Small and dependency-free on purpose (PyYAML only): the packaging tests must run offline, with no
Docker engine, in CI's clean clone.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: Opt-in override files (``docker compose -f docker-compose.yml -f docker-compose.X.yml``).
COMPOSE_OVERRIDES = sorted(ROOT.glob("docker-compose.*.yml"))
DOCKER_DIR = ROOT / "docker"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# -- compose ------------------------------------------------------------------------------------
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class VarUse:
    """One ``${...}`` reference in the compose file."""

    name: str
    op: str | None  # ":-", "-", ":?", "?", ":+", "+" or None (no default)
    arg: str | None


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute variables the way Compose does (``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``...)."""

    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op in (":-", "-"):
            use_default = value is None or (op == ":-" and value == "")
            return arg if use_default else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise KeyError(f"required variable {name} is not set: {arg}")
            return value
        if op in (":+", "+"):
            present = value is not None and (op == "+" or value != "")
            return arg if present else ""
        return value or ""

    return _VAR.sub(sub, text)


def _walk_strings(node: Any, fn) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, list):
        return [_walk_strings(v, fn) for v in node]
    if isinstance(node, dict):
        return {k: _walk_strings(v, fn) for k, v in node.items()}
    return node


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@lru_cache(maxsize=None)
def _raw_compose() -> str:
    return compose_text()


def load_compose_raw() -> dict:
    """Return docker-compose.yml as YAML (anchors resolved, variables not substituted)."""
    return yaml.safe_load(_raw_compose())


def load_compose(env: Mapping[str, str] | None = None) -> dict:
    """Return docker-compose.yml with variables substituted from ``env`` (default: none set)."""
    env = {} if env is None else env
    return _walk_strings(load_compose_raw(), lambda s: interpolate(s, env))


def variable_uses() -> list[VarUse]:
    """Return every variable reference in the compose file (comments excluded)."""
    uses = []

    def collect(s: str) -> str:
        for m in _VAR.finditer(s):
            name = m.group("braced") or m.group("plain")
            if name:
                uses.append(VarUse(name, m.group("op"), m.group("arg")))
        return s

    _walk_strings(load_compose_raw(), collect)
    return uses


def load_compose_file(path: Path, env: Mapping[str, str] | None = None) -> dict:
    """Return any compose file (e.g. an override) with variables substituted from ``env``."""
    return _walk_strings(
        yaml.safe_load(path.read_text()), lambda s: interpolate(s, {} if env is None else env)
    )


# -- published ports ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishedPort:
    """One container port published on the host: on ``host_ip`` ("" = every interface)."""

    host_ip: str
    published: str  # host port or range ("" = a random one)
    target: str

    @property
    def loopback_only(self) -> bool:
        """Return whether only this host can reach the port (127.0.0.0/8 or ::1)."""
        try:
            return ipaddress.ip_address(self.host_ip.strip("[]")).is_loopback
        except ValueError:  # "" (every interface) or a name
            return False


def parse_port(spec: Any) -> PublishedPort:
    """Parse one ``ports`` entry, short (``[IP:][HOST:]CONTAINER[/PROTO]``) or long (a mapping)."""
    if isinstance(spec, dict):
        published = spec.get("published")
        return PublishedPort(
            str(spec.get("host_ip") or ""),
            "" if published is None else str(published),
            str(spec.get("target", "")),
        )
    text = str(spec).rsplit("/", 1)[0]  # drop /tcp, /udp
    if text.startswith("["):  # [IPv6]:HOST:CONTAINER
        ip, _, rest = text[1:].partition("]:")
        host, _, target = rest.rpartition(":")
        return PublishedPort(ip, host, target)
    parts = text.split(":")
    if len(parts) == 1:
        return PublishedPort("", "", parts[0])
    if len(parts) == 2:
        return PublishedPort("", parts[0], parts[1])
    return PublishedPort(":".join(parts[:-2]), parts[-2], parts[-1])  # IPv4, or an unbracketed IPv6


def published_ports(service: Mapping[str, Any]) -> list[PublishedPort]:
    """Return every port a service publishes on the host."""
    return [parse_port(spec) for spec in service.get("ports") or []]


def as_argv(value: Any) -> list[str]:
    """Return a compose ``command``/``entrypoint`` (list or shell string) as an argument list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """Return a service's ``environment`` as a dict (mapping or ``KEY=value`` list form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# -- Dockerfiles --------------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the (joined) line
    line: int

    def json_or_shell(self) -> list[str]:
        """Return the arguments of an exec-form (JSON) or shell-form instruction as a list."""
        import json

        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return shlex.split(text)

    def flags_and_args(self) -> tuple[dict[str, str], list[str]]:
        """Split ``--flag=value`` options (COPY/ADD/FROM/HEALTHCHECK) from the other words."""
        flags, words = {}, []
        for word in shlex.split(self.args):
            if word.startswith("--") and not words:
                key, _, value = word[2:].partition("=")
                flags[key] = value
            else:
                words.append(word)
        return flags, words


@dataclass
class Stage:
    base: str  # resolved FROM image (or an earlier stage's name)
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def copies(self) -> list[tuple[Stage, Instruction]]:
        return [(s, i) for s in self.stages for i in s.instructions if i.keyword in ("COPY", "ADD")]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines and drop comments/blank lines, keeping the first line number."""
    out, buf, start = [], [], None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if start is None:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(b for b in buf if b)))
        buf, start = [], None
    if buf:
        out.append((start, " ".join(buf)))
    return out


def _substitute_args(text: str, args: Mapping[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)",
        lambda m: args.get(m.group(1) or m.group(3), m.group(2) or ""),
        text,
    )


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse a Dockerfile into stages (FROM resolved with the global ARG defaults)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in _logical_lines(path.read_text()):
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = _substitute_args(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(image, name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = args.strip().partition("=")
                global_args[key] = value.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip(), line))
    return Dockerfile(path, global_args, stages)


def dockerfiles() -> list[Path]:
    return sorted(DOCKER_DIR.glob("Dockerfile*"))


# -- .dockerignore ------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class DockerIgnore:
    """The .dockerignore rules: the last matching pattern wins; a match on a parent folder counts."""

    rules: tuple[tuple[bool, re.Pattern, str], ...]  # (is_exception, regex, source pattern)

    @classmethod
    def load(cls, path: Path = ROOT / ".dockerignore") -> "DockerIgnore":
        rules = []
        if path.exists():
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                negate = line.startswith("!")
                pattern = line[1:].strip() if negate else line
                pattern = pattern.strip("/") or "."
                rules.append((negate, _pattern_regex(pattern), line))
        return cls(tuple(rules))

    def excluded(self, rel_path: str) -> bool:
        parts = rel_path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negate, regex, _ in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not negate
        return excluded


# -- the project's scripts ----------------------------------------------------------------------
def load_docker_module(name: str) -> ModuleType:
    """Import a helper script from docker/ (e.g. ``estimate_sizes``) without changing sys.path for good."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DOCKER_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
