"""docker-compose.yml: valid Compose, every command runnable from this project, documented settings.

Validation runs offline with no Docker engine: against the Compose Specification JSON schema
vendored in fixtures/, and with a real Compose implementation (`docker compose` v2 or Debian's
`docker-compose`, which ./test.sh installs). Without one that test fails (tests/tooling.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.packaging.helpers import (
    COMPOSE_FILE,
    COMPOSE_OVERRIDES,
    FIXTURES,
    ROOT,
    PublishedPort,
    as_argv,
    environment,
    load_compose,
    load_compose_file,
    load_compose_raw,
    parse_dockerfile,
    parse_port,
    published_ports,
    variable_uses,
)
from tests.tooling import missing_tool

SCHEMA_FILE = FIXTURES / "compose-spec.json"
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"
PROFILES = {
    "api": None,
    "trainer": "train",
    "scorer": "batch",
    "prometheus": "monitoring",
    "dask-scheduler": "dask",
    "dask-worker": "dask",
}
#: The only service whose port other machines may reach; everything else is internal.
PUBLIC_SERVICES = {"api"}
ENTRYPOINT_SCRIPTS = {
    "/usr/local/bin/scorer-entrypoint": ROOT / "docker/scorer-entrypoint.sh",
    "/usr/local/bin/trainer-entrypoint": ROOT / "docker/trainer-entrypoint.sh",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def built_services(services) -> dict:
    return {name: svc for name, svc in services.items() if "build" in svc}


# -- the file is valid Compose ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schema() -> dict:
    data = SCHEMA_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, (
        "fixtures/compose-spec.json changed: see its README"
    )
    return json.loads(data)


def _validate(schema: dict, document: dict) -> None:
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_accepts_the_file_as_written(schema) -> None:
    _validate(schema, load_compose_raw())


def test_schema_accepts_the_file_with_defaults_and_with_overrides(schema) -> None:
    _validate(schema, load_compose())
    overrides = {u.name: "7" for u in variable_uses()}  # every variable set, to a number
    _validate(schema, load_compose(overrides))


def test_schema_is_strict_enough_to_catch_a_typo(schema) -> None:
    broken = load_compose()
    broken["services"]["api"]["healthchek"] = broken["services"]["api"].pop("healthcheck")
    with pytest.raises(AssertionError, match="healthchek"):
        _validate(schema, broken)


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _compose_config(tmp_path, *overrides: Path) -> dict:
    """Return ``compose config`` of the file (plus overrides) with every profile, as the CLI resolves it."""
    cli = _compose_cli()
    if cli is None:
        missing_tool("no Compose CLI here: apt-get install docker-compose, or the docker compose v2 plugin")
    profiles = [arg for p in sorted({p for p in PROFILES.values() if p}) for arg in ("--profile", p)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTIMENT_", "COMPOSE_", "DOCKER_"))}
    env["HOME"] = str(tmp_path)  # no user config
    empty_env_file = tmp_path / "empty.env"  # ignore a developer's .env: check the defaults
    empty_env_file.write_text("")
    files = [arg for f in (COMPOSE_FILE, *overrides) for arg in ("-f", str(f))]
    result = subprocess.run(
        [
            *cli,
            "--project-directory",
            str(ROOT),
            *files,
            "--env-file",
            str(empty_env_file),
            *profiles,
            "config",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_a_real_compose_implementation_accepts_the_file(tmp_path) -> None:
    resolved = _compose_config(tmp_path)
    assert set(resolved["services"]) == set(PROFILES)
    assert not exposed_internal_ports(resolved)
    api = resolved["services"]["api"]
    assert api["environment"]["SENTIMENT_WORKERS"] in ("2", 2)
    assert resolved["services"]["dask-worker"]["image"] == resolved["services"]["scorer"]["image"]


@pytest.mark.parametrize("override", COMPOSE_OVERRIDES, ids=lambda p: p.name)
def test_a_real_compose_implementation_merges_each_override(tmp_path, override: Path) -> None:
    resolved = _compose_config(tmp_path, override)
    assert set(resolved["services"]) == set(PROFILES)
    assert not exposed_internal_ports(resolved)


# -- nothing internal is reachable from other machines ---------------------------------------------------
def exposed_internal_ports(compose: dict) -> list[str]:
    """Return, for every service but the api, each way it listens beyond this host's loopback."""
    problems = []
    for name, svc in compose.get("services", {}).items():
        if name in PUBLIC_SERVICES:
            continue
        if svc.get("network_mode") == "host":
            problems.append(f"{name}: network_mode host puts every port it opens on every interface")
        for port in published_ports(svc):
            if not port.loopback_only:
                where = port.host_ip or "every interface"
                problems.append(f"{name}: publishes {port.target} on {where} (bind it to 127.0.0.1)")
    return problems


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("8786:8786", PublishedPort("", "8786", "8786")),
        ("8786", PublishedPort("", "", "8786")),
        (8786, PublishedPort("", "", "8786")),
        ("0.0.0.0:8786:8786", PublishedPort("0.0.0.0", "8786", "8786")),
        ("127.0.0.1:9090:9090/tcp", PublishedPort("127.0.0.1", "9090", "9090")),
        ("[::1]:8786:8786", PublishedPort("::1", "8786", "8786")),
        ("::1:8786:8786", PublishedPort("::1", "8786", "8786")),
        ("[::]:8786:8786/udp", PublishedPort("::", "8786", "8786")),
        ("127.0.0.1:8000-8010:8000-8010", PublishedPort("127.0.0.1", "8000-8010", "8000-8010")),
        ({"target": 8786, "published": "8786"}, PublishedPort("", "8786", "8786")),
        (
            {"target": 8786, "host_ip": "127.0.0.1", "published": 8786},
            PublishedPort("127.0.0.1", "8786", "8786"),
        ),
        ({"target": 8786}, PublishedPort("", "", "8786")),
    ],
)
def test_port_specs_are_parsed_in_every_syntax(spec, expected: PublishedPort) -> None:
    assert parse_port(spec) == expected


def test_the_exposure_check_catches_every_way_to_publish_everywhere() -> None:
    for spec in [
        "8786:8786",
        "8786",
        8786,
        "0.0.0.0:8786:8786",
        "[::]:8786:8786",
        "192.168.1.5:8786:8786",
        {"target": 8786, "published": 8786},
        {"target": 8786, "host_ip": "0.0.0.0"},
        {"target": 8786},
    ]:
        assert exposed_internal_ports({"services": {"dask-scheduler": {"ports": [spec]}}}), spec
    assert exposed_internal_ports({"services": {"prometheus": {"network_mode": "host"}}})
    for spec in [
        "127.0.0.1:8786:8786",
        "127.0.0.2:1:1",
        "[::1]:8786:8786",
        {"target": 1, "host_ip": "127.0.0.1"},
    ]:
        assert not exposed_internal_ports({"services": {"dask-scheduler": {"ports": [spec]}}}), spec
    assert not exposed_internal_ports({"services": {"api": {"ports": ["8000:8000"]}}})


@pytest.mark.parametrize("path", [COMPOSE_FILE, *COMPOSE_OVERRIDES], ids=lambda p: p.name)
def test_only_the_api_is_reachable_from_other_machines(path: Path) -> None:
    """The Dask scheduler runs any code a client sends; Prometheus has no login: neither leaves the host."""
    every_variable_set = {u.name: "7" for u in variable_uses()}
    for env in ({}, every_variable_set):
        problems = exposed_internal_ports(load_compose_file(path, env))
        assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_dask_scheduler_is_internal_unless_the_override_publishes_it_on_loopback() -> None:
    assert "ports" not in load_compose()["services"]["dask-scheduler"]
    override = load_compose_file(ROOT / "docker-compose.dask-port.yml")
    assert set(override["services"]) == {"dask-scheduler"}
    [port] = published_ports(override["services"]["dask-scheduler"])
    assert (port.host_ip, port.published, port.target) == ("127.0.0.1", "8786", "8786")
    assert published_ports(load_compose()["services"]["prometheus"])[0].host_ip == "127.0.0.1"


@pytest.mark.parametrize("path", COMPOSE_OVERRIDES, ids=lambda p: p.name)
def test_overrides_are_valid_compose_and_name_existing_services(schema, path: Path) -> None:
    override = yaml.safe_load(path.read_text())
    _validate(schema, override)
    assert set(override["services"]) <= set(PROFILES)
    assert path.name in (ROOT / "docs/deploy.md").read_text()


# -- services, profiles, volumes -------------------------------------------------------------------------
def test_services_and_profiles(services) -> None:
    assert set(services) == set(PROFILES)
    for name, profile in PROFILES.items():
        assert services[name].get("profiles") == ([profile] if profile else None), name


def test_every_variable_has_a_default() -> None:
    for use in variable_uses():
        assert use.op in (":-", "-"), f"${{{use.name}}} has no default: write ${{{use.name}:-default}}"


def test_named_volumes_and_who_writes_them(compose, services) -> None:
    assert {"models", "data"} <= set(compose["volumes"])
    mounts = {name: {v.split(":")[0]: v for v in svc.get("volumes", [])} for name, svc in services.items()}
    assert mounts["api"]["models"] == "models:/models:ro"
    assert mounts["trainer"]["models"] == "models:/models"  # the only writer of the registry
    assert mounts["trainer"]["data"] == "data:/data"
    for name in ("scorer", "dask-worker"):  # workers read input and write parts at the scorer's paths
        assert mounts[name]["models"] == "models:/models:ro"
        assert mounts[name]["data"] == "data:/data"
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount source {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"


def test_builds_use_dockerfiles_that_exist(services) -> None:
    for name, svc in built_services(services).items():
        build = svc["build"]
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} does not exist"
        python_image = build.get("args", {}).get("PYTHON_IMAGE")
        dockerfile = parse_dockerfile(ROOT / build["dockerfile"])
        assert python_image == dockerfile.global_args["PYTHON_IMAGE"], (
            f"{name}: compose builds with {python_image}, the Dockerfile defaults to "
            f"{dockerfile.global_args['PYTHON_IMAGE']}"
        )


def test_services_sharing_an_image_build_it_the_same_way(services) -> None:
    by_image: dict[str, list[str]] = {}
    for name, svc in built_services(services).items():
        by_image.setdefault(svc["image"], []).append(name)
    assert sorted(by_image[services["scorer"]["image"]]) == ["dask-scheduler", "dask-worker", "scorer"]
    for names in by_image.values():
        assert len({json.dumps(services[n]["build"], sort_keys=True) for n in names}) == 1, names


def test_images_are_pinned_and_not_latest(services) -> None:
    from tests.packaging.test_dockerfiles import is_pinned

    for name, svc in services.items():
        if "build" not in svc:
            assert is_pinned(svc["image"]), f"{name}: image {svc['image']} is not pinned to a version tag"
        assert not svc["image"].endswith(":latest"), name


def test_containers_run_as_non_root(services) -> None:
    for name, svc in services.items():
        assert not svc.get("privileged"), name
        if "build" in svc:
            final = parse_dockerfile(ROOT / svc["build"]["dockerfile"]).final
            assert final.all("USER"), f"{name}: its Dockerfile sets no USER"
            assert str(svc.get("user", "nonroot")).split(":")[0] not in ("root", "0"), name
        else:
            user = str(svc.get("user", ""))
            assert user and user.split(":")[0] not in ("root", "0"), f"{name}: set a non-root `user:`"


def test_api_service(services) -> None:
    api = services["api"]
    assert api["ports"] == ["8000:8000"]
    health = " ".join(as_argv(api["healthcheck"]["test"]))
    assert "/readyz" in health and "127.0.0.1:8000" in health and "curl" not in health
    compile(as_argv(api["healthcheck"]["test"])[-1], "<healthcheck>", "exec")
    env = environment(api)
    assert env["SENTIMENT_MODEL_DIR"] == "/models" and env["SENTIMENT_RUNTIME"] == "onnx"
    assert env["SENTIMENT_BIND"].endswith(":8000")
    assert api["read_only"] is True and env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert "/tmp" in api["tmpfs"]
    dockerfile_cmd = parse_dockerfile(ROOT / "docker/Dockerfile.api").final.all("CMD")[-1].json_or_shell()
    assert as_argv(api["command"]) == dockerfile_cmd


def test_api_port_is_configurable() -> None:
    api = load_compose({"SENTIMENT_API_PORT": "9000"})["services"]["api"]
    assert api["ports"] == ["9000:8000"]


def test_prometheus_scrapes_the_api() -> None:
    config = yaml.safe_load((ROOT / "docker/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["sentiment-api"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in api["static_configs"] for t in group["targets"]]
    assert targets == ["api:8000"]


# -- settings: compose defaults are the service's defaults ----------------------------------------------
def _service_settings():
    return importlib.import_module("service.settings")


def test_api_environment_names_real_settings_with_their_defaults() -> None:
    settings = _service_settings()
    documented = {name: default for name, default, _ in settings.describe()}
    raw_env = environment(load_compose_raw()["services"]["api"])
    for name, value in raw_env.items():
        if not name.startswith("SENTIMENT_"):
            continue
        assert name in documented, f"api sets {name}, which service/settings.py does not know"
        m = re.fullmatch(r"\$\{(\w+):-(.*)\}", value)
        if m:
            assert m.group(1) == name, f"{name} is read from ${{{m.group(1)}}}"
            assert m.group(2) == str(documented[name]), (
                f"{name}: compose default {m.group(2)!r} differs from "
                f"service/settings.py {documented[name]!r}"
            )


def test_api_environment_is_accepted_by_the_settings(tmp_path, monkeypatch) -> None:
    settings = _service_settings()
    env = environment(load_compose()["services"]["api"])
    settings.Settings.from_env(env)
    settings.ServerSettings.from_env(env)
    # gunicorn's own config file reads the same variables at import.
    for key in [k for k in os.environ if k.startswith("SENTIMENT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    config = runpy.run_path(str(ROOT / "service/gunicorn.conf.py"))
    assert config["bind"] == "0.0.0.0:8000" and config["workers"] == 2
    assert config["worker_class"] == "service.asgi.SentimentWorker"


# -- every command refers to something that exists -----------------------------------------------------
_PYTHON_M = re.compile(r"python3? -m ([A-Za-z_][\w.]*)((?: [a-z][\w-]*)*)")


def python_invocations() -> dict[tuple[str, ...], list[str]]:
    """Return {(module, subcommand...): [where]} for every `python -m` in compose, Dockerfiles, scripts."""
    found: dict[tuple[str, ...], list[str]] = {}
    texts = {"docker-compose.yml": json.dumps(load_compose())}
    for svc_name, svc in load_compose()["services"].items():
        for key in ("command", "entrypoint"):
            texts[f"docker-compose.yml:{svc_name}.{key}"] = " ".join(as_argv(svc.get(key)))
    for path in sorted((ROOT / "docker").iterdir()):
        if path.name.startswith("Dockerfile") or path.suffix == ".sh":
            texts[path.relative_to(ROOT).as_posix()] = re.sub(r"\s*\\\n\s*", " \\ ", path.read_text())
    for where, text in texts.items():
        for m in _PYTHON_M.finditer(text):
            key = (m.group(1), *m.group(2).split())
            found.setdefault(key, []).append(where)
    return found


INVOCATIONS = python_invocations()


def test_the_expected_entry_points_are_used() -> None:
    modules = {key[0] for key in INVOCATIONS}
    assert {"scoring", "training.pipeline"} <= modules
    assert ("training.pipeline", "retrain") in INVOCATIONS


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def run_module_help(invocation: tuple[str, ...], monkeypatch, capsys) -> str:
    """Run `python -m MODULE [SUBCOMMAND...] --help` in this interpreter (runpy: `-m`); return stdout.

    In-process rather than a subprocess per module: they all import the same numpy/pandas stack.
    """
    monkeypatch.setattr(sys, "argv", [invocation[0], *invocation[1:], "--help"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules ... prior to execution"
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(invocation[0], run_name="__main__", alter_sys=True)
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), (
        f"python -m {' '.join(invocation)} --help failed:\n{out.err[-2000:]}"
    )
    return out.out


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS), ids=" ".join)
def test_python_module_exists_and_its_help_exits_0(invocation: tuple[str, ...], monkeypatch, capsys) -> None:
    module = invocation[0]
    if not _module_exists(module):
        pytest.fail(f"python -m {module} (used in {INVOCATIONS[invocation]}) does not exist")
    help_text = run_module_help(invocation, monkeypatch, capsys)
    assert "usage:" in help_text
    if invocation == ("training.pipeline", "retrain"):
        assert "--every-hours" in help_text, "the trainer service schedules with retrain --every-hours N"
        assert "--new-data" in help_text, "the trainer entrypoint passes --new-data"


def _console_scripts(requirements: str) -> set[str]:
    from tests.packaging.helpers import load_docker_module

    sizes = load_docker_module("estimate_sizes")
    found = sizes.closure(sizes.read_requirements(requirements))
    return {
        ep.name for dist in found.dists.values() for ep in dist.entry_points if ep.group == "console_scripts"
    }


def test_every_program_a_service_runs_is_in_its_image(services) -> None:
    from tests.packaging.helpers import load_docker_module

    requirements = {i.dockerfile: i.requirements for i in load_docker_module("estimate_sizes").IMAGES}
    for name, svc in built_services(services).items():
        dockerfile = svc["build"]["dockerfile"]
        scripts = _console_scripts(requirements[dockerfile])
        final = parse_dockerfile(ROOT / dockerfile).final
        entrypoint = as_argv(svc.get("entrypoint")) or (
            final.all("ENTRYPOINT")[-1].json_or_shell() if final.all("ENTRYPOINT") else []
        )
        command = as_argv(svc.get("command"))
        if entrypoint:
            assert entrypoint[0] in ENTRYPOINT_SCRIPTS, f"{name}: unknown entrypoint {entrypoint[0]}"
            copied = {i.flags_and_args()[1][-1] for i in final.all("COPY")}
            assert entrypoint[0] in copied, f"{name}: {dockerfile} does not install {entrypoint[0]}"
        if command and not command[0].startswith("-"):
            assert command[0] == "python" or command[0] in scripts, (
                f"{name}: {command[0]} is not a console script of {requirements[dockerfile]}"
            )


def test_gunicorn_command_points_at_the_app_factory(services) -> None:
    argv = as_argv(services["api"]["command"])
    assert argv[0] == "gunicorn"
    config = argv[argv.index("-c") + 1]
    assert (ROOT / config).is_file()
    module, _, factory = argv[-1].partition(":")
    assert factory.endswith("()")
    assert _module_exists(module), f"gunicorn app module {module} does not exist"
    app_module = importlib.import_module(module)
    assert callable(getattr(app_module, factory[:-2]))


def test_dask_commands_parse(services) -> None:
    from distributed.cli import dask_scheduler, dask_worker

    for name, main in (("dask-scheduler", dask_scheduler.main), ("dask-worker", dask_worker.main)):
        argv = as_argv(services[name]["command"])
        assert argv[:2] == ["dask", name.split("-")[1]]
        ctx = main.make_context(" ".join(argv[:2]), argv[2:])
        assert not ctx.params.get("preload_argv"), f"{name}: unknown arguments {ctx.params['preload_argv']}"
        assert ctx.params["dashboard"] is False
    worker = dask_worker.main.make_context("dask worker", as_argv(services["dask-worker"]["command"])[2:])
    assert worker.params["scheduler"] == "tcp://dask-scheduler:8786"
    assert worker.params["nthreads"] == 1


# -- the entrypoint scripts build valid command lines ---------------------------------------------------
def run_entrypoint(script: Path, args: list[str], env: dict[str, str], tmp_path: Path) -> list[str]:
    """Run an entrypoint with a stub `python`/`dask` on PATH; return the argv it exec'd."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    out = tmp_path / "argv.json"
    for program in ("python", "dask"):
        stub = bin_dir / program
        stub.write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            f"json.dump([{program!r}, *sys.argv[1:]], open({str(out)!r}, 'w'))\n"
        )
        stub.chmod(0o755)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(
        ["/bin/sh", str(script), *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def compose_env(service: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    return environment(load_compose(overrides or {})["services"][service])


def _scoring_args(argv: list[str], env: dict[str, str], monkeypatch):
    assert argv[:3] == ["python", "-m", "scoring"], argv
    from scoring.cli import build_parser

    for key, value in env.items():  # the scorer reads the registry and model name from the environment
        monkeypatch.setenv(key, value)
    return build_parser().parse_args(argv[3:])


def test_scorer_entrypoint_defaults(tmp_path, monkeypatch) -> None:
    env = compose_env("scorer")
    argv = run_entrypoint(ENTRYPOINT_SCRIPTS["/usr/local/bin/scorer-entrypoint"], [], env, tmp_path)
    args = _scoring_args(argv, env, monkeypatch)
    assert (str(args.input), str(args.output), str(args.registry_root)) == (
        "/data/incoming",
        "/data/scored",
        "/models",
    )
    assert args.engine == "local" and args.scheduler is None and args.model_version == "production"


def test_scorer_entrypoint_dask_engine_and_flag_overrides(tmp_path, monkeypatch) -> None:
    env = compose_env(
        "scorer",
        {
            "SENTIMENT_SCORE_ENGINE": "dask",
            "SENTIMENT_SCORE_MODEL_VERSION": "3",
            "SENTIMENT_SCORE_WORKERS": "4",
        },
    )
    argv = run_entrypoint(
        ENTRYPOINT_SCRIPTS["/usr/local/bin/scorer-entrypoint"],
        ["--input", "/data/other.csv", "--format", "csv"],
        env,
        tmp_path,
    )
    args = _scoring_args(argv, env, monkeypatch)
    assert args.engine == "dask" and args.scheduler == "tcp://dask-scheduler:8786"
    assert (args.model_version, args.workers, str(args.input), args.output_format) == (
        3,
        4,
        "/data/other.csv",
        "csv",
    )


def test_scorer_entrypoint_runs_other_commands_as_given(tmp_path) -> None:
    argv = run_entrypoint(
        ENTRYPOINT_SCRIPTS["/usr/local/bin/scorer-entrypoint"],
        ["dask", "scheduler", "--port", "1"],
        compose_env("scorer"),
        tmp_path,
    )
    assert argv == ["dask", "scheduler", "--port", "1"]


RETRAIN = ["python", "-m", "training.pipeline", "retrain", "--new-data", "/data/new"]


@pytest.mark.parametrize(
    "every, expected",
    [(None, []), ("0", []), ("6", ["--every-hours", "6"]), ("0.5", ["--every-hours", "0.5"])],
)
def test_trainer_entrypoint_one_shot_or_scheduled(tmp_path, every, expected) -> None:
    overrides = {} if every is None else {"SENTIMENT_RETRAIN_EVERY_HOURS": every}
    env = compose_env("trainer", overrides)
    argv = run_entrypoint(ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"], [], env, tmp_path)
    assert argv == [*RETRAIN, *expected]
    argv = run_entrypoint(
        ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"], ["--dry-run"], env, tmp_path
    )
    assert argv == [*RETRAIN, *expected, "--dry-run"]


def test_trainer_entrypoint_builds_a_valid_pipeline_command(tmp_path, monkeypatch) -> None:
    env = compose_env(
        "trainer", {"SENTIMENT_RETRAIN_EVERY_HOURS": "6", "SENTIMENT_NEW_DATA_DIR": "/data/drop"}
    )
    argv = run_entrypoint(
        ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"], ["--keep-last", "3"], env, tmp_path
    )
    pipeline = importlib.import_module("training.pipeline")
    for key, value in env.items():  # the pipeline reads some defaults from the environment
        monkeypatch.setenv(key, value)
    args = pipeline.build_parser().parse_args(argv[3:])
    assert (args.command, str(args.new_data), args.every_hours, args.keep_last) == (
        "retrain",
        "/data/drop",
        6.0,
        3,
    )
    assert (str(args.registry_root), args.model_name, str(args.gold)) == (
        "/models",
        "sentiment",
        "/data/gold.csv",
    )


@pytest.mark.parametrize("when, expected", [("0", []), ("1", ["--when-drift"]), ("true", ["--when-drift"])])
def test_trainer_entrypoint_retrains_only_on_drift_when_asked(tmp_path, when, expected) -> None:
    env = compose_env("trainer", {"SENTIMENT_RETRAIN_WHEN_DRIFT": when, "SENTIMENT_RETRAIN_EVERY_HOURS": "6"})
    argv = run_entrypoint(ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"], [], env, tmp_path)
    assert argv == [*RETRAIN, *expected, "--every-hours", "6"]
    if _module_exists("training.pipeline"):
        args = importlib.import_module("training.pipeline").build_parser().parse_args(argv[3:])
        assert args.when_drift is bool(expected)
    result = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"])],
        env={"PATH": "/usr/bin:/bin", "SENTIMENT_RETRAIN_WHEN_DRIFT": "maybe"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "SENTIMENT_RETRAIN_WHEN_DRIFT" in result.stderr


def test_the_loop_volume_carries_feedback_and_sample_from_api_to_trainer(services) -> None:
    for name in ("api", "trainer"):
        assert "loop:/loop" in services[name]["volumes"], name
    api, trainer = environment(services["api"]), environment(services["trainer"])
    assert api["SENTIMENT_SAMPLE_DIR"] == trainer["SENTIMENT_SAMPLE_DIR"] == "/loop/sample"
    for dockerfile in ("docker/Dockerfile.api", "docker/Dockerfile.trainer"):
        text = (ROOT / dockerfile).read_text()
        assert "/loop/feedback /loop/sample" in text and "chown -R sentiment:sentiment" in text, dockerfile


def test_trainer_entrypoint_rejects_a_bad_schedule(tmp_path) -> None:
    script = ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"]
    result = subprocess.run(
        ["/bin/sh", str(script)],
        env={"PATH": "/usr/bin:/bin", "SENTIMENT_RETRAIN_EVERY_HOURS": "6h"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "SENTIMENT_RETRAIN_EVERY_HOURS" in result.stderr


def test_trainer_entrypoint_runs_other_commands_as_given(tmp_path) -> None:
    argv = run_entrypoint(
        ENTRYPOINT_SCRIPTS["/usr/local/bin/trainer-entrypoint"],
        ["python", "-m", "training.train", "--preset", "small"],
        compose_env("trainer"),
        tmp_path,
    )
    assert argv == ["python", "-m", "training.train", "--preset", "small"]


# -- the docs cover every setting -------------------------------------------------------------------------
def test_deploy_doc_lists_every_variable_and_profile() -> None:
    doc = (ROOT / "docs/deploy.md").read_text()
    names = {u.name for u in variable_uses()}
    for svc in load_compose()["services"].values():
        names |= set(environment(svc))
    for script in ENTRYPOINT_SCRIPTS.values():
        names |= set(re.findall(r"\$\{(SENTIMENT_\w+)", script.read_text()))
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"docs/deploy.md does not document: {missing}"
    for profile in {p for p in PROFILES.values() if p}:
        assert f"--profile {profile}" in doc
    assert "estimate" in doc.lower() and "130 MB" in doc
