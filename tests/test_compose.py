"""docker-compose.yml (and the Dockerfile it builds), checked without a Docker engine.

Read as Docker would run it (each service's command, environment and health check, the
image's defaults where the service has none), the file must have: health checks that can
pass (the port and path probed are served in that service, by the command it runs), no
host port published twice and no two listeners on one port in a service, no default
credentials (every secret is a ``${VAR:?message}`` the user must set), and every image
pinned to a version. Then the steps that can run here are run as written: the bucket's
creation against a real S3 server (moto), and the health checks of browse, a worker and
the Prefect server against those servers started as the services start them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import boto3
import pytest
import yaml

from browse.cli import DEFAULT_PORT as BROWSE_DEFAULT_PORT
from tests.conftest import AWS_TEST_ENV, REPO_ROOT, free_port, write_sites_file

COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")

# What the images we do not build run, and the tools in them a health check can use: read
# off their upstream Dockerfiles (versitygw: its binary on Alpine, whose busybox has wget).
FOREIGN_IMAGES = {"versity/versitygw": {"entrypoint": ["/app/versitygw"], "tools": {"wget"}}}
# Our image has Python (and our commands) for its health checks.
OUR_TOOLS = {"python", "newsarchive", "prefect"}
# Environment variables whose value is a credential.
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|_USER\b")
# A compose variable reference (``$${`` is a literal dollar, not one).
REFERENCE = re.compile(r"(?<!\$)\$\{(\w+)([^}]*)\}")
URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s'\"]*)?")


def _dockerfile_instruction(name: str) -> str | None:
    text = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.*)$", text, re.M)
    return found[-1].strip() if found else None


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.*)$", DOCKERFILE.replace("\\\n", " "), re.M):
        for item in shlex.split(line):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def _dockerfile_healthcheck() -> list[str]:
    instruction = _dockerfile_instruction("HEALTHCHECK")
    return ["CMD", *json.loads(instruction.split("CMD", 1)[1])]


@dataclass(frozen=True)
class Service:
    """A service as Docker runs it."""

    name: str
    """Its name in the compose file."""
    argv: list[str]
    """Its process's command line: entrypoint and command, the image's where it sets none."""
    env: dict[str, str]
    """Its environment: the image's, then the service's."""
    healthcheck: dict | None
    """Its health check (compose's keys), the image's where it sets none; None without."""
    tools: set[str]
    """Programs its image has for a health check to run."""
    ours: bool
    """Built from this repository."""


def service(name: str) -> Service:
    spec = SERVICES[name]
    env = {k: str(v) for k, v in (spec.get("environment") or {}).items()}
    if spec.get("build"):
        entrypoint = json.loads(_dockerfile_instruction("ENTRYPOINT"))
        command = json.loads(_dockerfile_instruction("CMD"))
        image_env, healthcheck, tools = _dockerfile_env(), {"test": _dockerfile_healthcheck()}, OUR_TOOLS
    else:
        repository = spec["image"].split("@")[0].rsplit(":", 1)[0]
        known = FOREIGN_IMAGES.get(repository)
        assert known, f"{name}: what does image {spec['image']} run? (add it to FOREIGN_IMAGES)"
        entrypoint, command, image_env, healthcheck, tools = \
            known["entrypoint"], [], {}, None, known["tools"]
    # Compose: an entrypoint given in the service resets the image's command.
    argv = (spec.get("entrypoint") or entrypoint) + (
        spec["command"] if "command" in spec else ([] if "entrypoint" in spec else command))
    return Service(name=name, argv=argv, env={**image_env, **env},
                   healthcheck=spec.get("healthcheck", healthcheck), tools=tools,
                   ours=bool(spec.get("build")))


def _option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def _enabled(value: str | None) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def listeners(svc: Service) -> list[tuple[int, str, str]]:
    """Every (port, path a health check may probe, what) a process of the service listens
    on: its own command's, and, in a service of our image, the browse the README says may
    be run in it (``docker compose exec SERVICE newsarchive browse``)."""
    argv, env, found = svc.argv, svc.env, []
    if argv[:2] == ["newsarchive", "serve"]:
        if _enabled(env.get("PREFECT_RUNNER_SERVER_ENABLE")):
            found.append((int(env.get("PREFECT_RUNNER_SERVER_PORT", "8080")), "/health",
                          "serve's runner webserver"))
    elif argv[:2] == ["newsarchive", "browse"]:
        found.append((int(_option(argv, "--port", str(BROWSE_DEFAULT_PORT))), "/", "browse"))
    elif argv[:3] == ["prefect", "server", "start"]:
        found.append((int(_option(argv, "--port", "4200")), "/api/health", "Prefect's server"))
    elif argv[:3] == ["prefect", "worker", "start"]:
        if "--with-healthcheck" in argv:
            found.append((int(env.get("PREFECT_WORKER_WEBSERVER_PORT", "8080")), "/health",
                          "the worker's webserver"))
    elif argv[:1] == ["/app/versitygw"]:
        port = int(_option(argv, "--port", ":7070").rsplit(":", 1)[1])
        found.append((port, _option(argv, "--health", "(no health endpoint)"), "versitygw"))
    elif argv[:2] == ["python", "-c"]:
        pass  # a one-shot script
    else:
        raise AssertionError(f"{svc.name}: cannot tell what {argv} serves")
    if svc.ours and argv[:2] != ["newsarchive", "browse"]:
        found.append((BROWSE_DEFAULT_PORT, "/", "a browse run in it"))
    return found


def one_shot(name: str) -> bool:
    """Other services wait for ``name`` to complete, not to be healthy."""
    return any((spec.get("depends_on") or {}).get(name, {}).get("condition")
               == "service_completed_successfully" for spec in SERVICES.values())


def probe(svc: Service) -> tuple[str, int, str] | None:
    """(program, port, path) of the service's health check; None when it is disabled."""
    check = svc.healthcheck
    assert check, f"{svc.name} has no health check"
    if check.get("disable") or check.get("test") in (["NONE"], "NONE"):
        return None
    test = check["test"]
    argv = shlex.split(test) if isinstance(test, str) else (
        shlex.split(test[1]) if test[0] == "CMD-SHELL" else test[1:])
    urls = URL.findall(" ".join(argv))
    assert len(urls) == 1, f"{svc.name}: its health check asks {urls}, not one local URL"
    port, path = urls[0]
    return argv[0], int(port), path or "/"


# -- the file, as Docker would run it --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_health_check_can_pass(name):
    svc = service(name)
    probed = probe(svc)
    if probed is None:
        assert one_shot(name), f"{name}: health check disabled, but it is not a one-shot job"
        return
    program, port, path = probed
    assert program in svc.tools, f"{name}: its image has no {program} to run the check"
    served = {(p, served_path) for p, served_path, _ in listeners(svc)}
    assert (port, path) in served, \
        f"{name}: the health check asks :{port}{path}, which nothing in it serves ({served})"


def test_no_port_is_taken_twice():
    published: dict[int, str] = {}
    for name in SERVICES:
        svc = service(name)
        own = listeners(svc)
        ports = [port for port, _, _ in own]
        clashes = sorted({port for port in ports if ports.count(port) > 1})
        assert not clashes, f"{name}: two listeners on port {clashes}: {own}"
        for mapping in SERVICES[name].get("ports", []):
            address, host_port, container_port = str(mapping).split(":")
            assert address == "127.0.0.1", f"{name}: {mapping} is published beyond loopback"
            assert int(container_port) in ports, \
                f"{name}: publishes port {container_port}, on which it serves nothing"
            assert int(host_port) not in published, \
                f"{name} and {published.get(int(host_port))} both publish port {host_port}"
            published[int(host_port)] = name


def test_no_credential_has_a_default():
    references = REFERENCE.findall(COMPOSE_TEXT)
    assert references, "the check finds no variable reference"
    secrets = [(name, rest) for name, rest in references if SECRET_NAME.search(name)]
    assert secrets, "the file names no credential variable"
    for name, rest in secrets:
        assert rest.startswith(":?") and len(rest) > 2, \
            f"${{{name}{rest}}}: a credential must be required (${{{name}:?message}})"
    # And no credential is written in the file itself.
    environments = [spec.get("environment") or {} for spec in SERVICES.values()]
    environments += [value for key, value in COMPOSE.items()
                     if key.startswith("x-") and isinstance(value, dict)]
    checked = 0
    for environment in environments:
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                checked += 1
                match = REFERENCE.fullmatch(str(value))
                assert match and match.group(2).startswith(":?"), f"{key}: {value!r}"
    assert checked >= 4


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and \
        re.fullmatch(r"v?\d+(\.\d+)+([-.][\w.-]+)?", tag) is not None


def test_every_image_is_pinned():
    images = [spec["image"] for spec in SERVICES.values() if "image" in spec]
    images += re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.M)
    assert len(images) >= 2
    loose = [image for image in images if not _pinned(image)]
    assert not loose, f"not pinned to a version: {loose}"
    assert not _pinned("minio/minio:latest") and not _pinned("minio/mc")
    assert _pinned("versity/versitygw:v1.8.0") and _pinned("python:3.11-slim")


def test_the_checks_catch_what_they_look_for():
    """Each rule above fails on a file that breaks it: the worker of before (the image's
    check, its runner off), a runner on browse's port, a default password."""
    worker = Service(name="worker", argv=["prefect", "worker", "start", "--pool", "p"],
                     env={"PREFECT_RUNNER_SERVER_ENABLE": "false"},
                     healthcheck={"test": _dockerfile_healthcheck()}, tools=OUR_TOOLS, ours=True)
    assert (probe(worker)[1], probe(worker)[2]) not in {(p, q) for p, q, _ in listeners(worker)}
    serve = Service(name="serve", argv=["newsarchive", "serve"],
                    env={"PREFECT_RUNNER_SERVER_ENABLE": "true",
                         "PREFECT_RUNNER_SERVER_PORT": str(BROWSE_DEFAULT_PORT)},
                    healthcheck=None, tools=OUR_TOOLS, ours=True)
    ports = [port for port, _, _ in listeners(serve)]
    assert len(ports) != len(set(ports))
    name, rest = REFERENCE.findall("${MINIO_ROOT_PASSWORD:-change-me-please}")[0]
    assert SECRET_NAME.search(name) and not rest.startswith(":?")


# -- the steps that can run here, run as written ---------------------------------------------

def health_command(name: str, port: int) -> list[str]:
    """The service's health check as a command line here, asking ``port`` instead."""
    program, probed_port, _ = probe(service(name))
    argv = service(name).healthcheck["test"][1:]
    assert argv[0] == program == "python"
    return [sys.executable, *(a.replace(f":{probed_port}/", f":{port}/") for a in argv[1:])]


def passes_soon(command: list[str], timeout: float, what: str) -> None:
    """Run the health check until it passes (the server may still be starting)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if last.returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"{what}: the health check never passed: {last.stderr[-2000:]}")


def _environment(name: str, **overrides: str) -> dict[str, str]:
    """The service's environment, its ``${VAR:?...}`` given here."""
    env = {k: v for k, v in service(name).env.items() if not REFERENCE.fullmatch(v)}
    return {**os.environ, **env, **overrides}


def test_create_bucket_makes_the_bucket_and_runs_again_harmlessly(s3_archive):
    svc = service("create-bucket")
    assert svc.argv[:2] == ["python", "-c"] and len(svc.argv) == 3
    env = _environment("create-bucket", AWS_ENDPOINT_URL=s3_archive.endpoint, **AWS_TEST_ENV)
    bucket = re.search(r's3://([^/]+)/', svc.env["NEWSARCHIVE_ARCHIVE_URL"]).group(1)
    client = boto3.client("s3", endpoint_url=s3_archive.endpoint, region_name="us-east-1",
                          aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"])
    try:
        for _ in range(2):  # a second `docker compose up` runs it again
            done = subprocess.run([sys.executable, "-c", svc.argv[2]], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
        assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    finally:
        client.delete_bucket(Bucket=bucket)


def test_browse_answers_its_health_check(tmp_path):
    """browse started as the service starts it (on loopback here, where the service binds
    its container's every address: either way the loopback names are answered)."""
    svc = service("browse")
    port = free_port()
    argv = [a.replace(str(listeners(svc)[0][0]), str(port)) for a in svc.argv]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    (tmp_path / "archive").mkdir()
    config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [])
    env = _environment("browse", NEWSARCHIVE_ARCHIVE_URL=str(tmp_path / "archive"),
                       NEWSARCHIVE_CONFIG=str(config), PYTHONPATH=str(REPO_ROOT))
    server = subprocess.Popen([sys.executable, "-m", "flows", *argv[1:]], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        passes_soon(health_command("browse", port), 120, "browse")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()


def test_a_worker_answers_its_health_check(prefect_api_url, tmp_path):
    svc = service("worker")
    port = free_port()
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    argv = [pool if a == _option(svc.argv, "--pool") else a for a in svc.argv]
    env = _environment("worker", PREFECT_API_URL=prefect_api_url,
                       PREFECT_WORKER_WEBSERVER_PORT=str(port), PYTHONPATH=str(REPO_ROOT))
    assert env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", *argv], cwd=tmp_path, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            passes_soon(health_command("worker", port), 180, "the worker")
        finally:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def test_the_prefect_server_answers_its_health_check(prefect_api_url):
    port = int(re.search(r":(\d+)/", prefect_api_url).group(1))
    passes_soon(health_command("prefect-server", port), 60, "the Prefect server")


def test_serve_runs_the_runner_webserver_its_health_check_asks():
    """What tests/test_orchestration.py runs against a real serve: the image's check, on the
    runner's port, which is not browse's."""
    svc = service("serve")
    assert _enabled(svc.env["PREFECT_RUNNER_SERVER_ENABLE"])
    assert svc.env["PREFECT_RUNNER_SERVER_HOST"] == "127.0.0.1"
    assert int(svc.env["PREFECT_RUNNER_SERVER_PORT"]) != BROWSE_DEFAULT_PORT
    assert probe(svc)[1:] == (int(svc.env["PREFECT_RUNNER_SERVER_PORT"]), "/health")


def test_the_readme_documents_the_compose_services():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for variable in {name for name, _ in REFERENCE.findall(COMPOSE_TEXT)}:
        assert variable in readme, variable
    assert "docker compose exec serve newsarchive browse" not in readme
    assert f"http://127.0.0.1:{listeners(service('browse'))[0][0]}" in readme
