"""The user's Kafka client settings (SASL/SSL) reach every client the project creates."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from fraudstream import kafka
from fraudstream.config import Settings

SASL = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.username": "key",
        "sasl.password": "s3cret=with=equals"}
PROJECT = Path(kafka.__file__).parent


def write_properties(tmp_path: Path) -> Path:
    path = tmp_path / "client.properties"
    path.write_text("# Confluent Cloud\n\n" + "\n".join(f"{key}={value}" for key, value in SASL.items())
                    + "\nclient.id = from-file\n")
    return path


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}

    def fake(name: str) -> Any:
        def build(config: dict[str, Any]) -> str:
            seen[name] = config
            return name
        return build

    for name in ("Producer", "Consumer", "AdminClient"):
        monkeypatch.setattr(kafka, name, fake(name))
    return seen


def test_file_and_json_settings_reach_producer_consumer_and_admin(
        tmp_path: Path, captured: dict[str, dict[str, Any]]) -> None:
    settings = Settings(state_dir=tmp_path, kafka_client_config_file=write_properties(tmp_path),
                        kafka_client_config={"client.id": "from-env"})
    kafka.producer(settings, **{"linger.ms": 0})
    kafka.consumer(settings, "group")
    kafka.admin(settings)
    for name in ("Producer", "Consumer", "AdminClient"):
        config = captured[name]
        assert {key: config[key] for key in SASL} == SASL, name
        assert config["client.id"] == "from-env", name  # the JSON setting wins over the file
        assert config["bootstrap.servers"] == settings.kafka_bootstrap
    assert captured["Producer"]["linger.ms"] == 0  # the caller's own overrides still apply


def test_json_setting_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_CLIENT_CONFIG", '{"security.protocol": "SSL", "socket.timeout.ms": 5000}')
    config = kafka.client_config(Settings(state_dir=tmp_path))
    assert config == {"security.protocol": "SSL", "socket.timeout.ms": 5000}


def test_no_settings_add_nothing(tmp_path: Path) -> None:
    assert kafka.client_config(Settings(state_dir=tmp_path)) == {}


def test_sasl_ssl_config_is_accepted_by_librdkafka(tmp_path: Path) -> None:
    """The documented managed-Kafka example is valid for the installed librdkafka (SASL and SSL built in)."""
    settings = Settings(state_dir=tmp_path, kafka_bootstrap="localhost:1",
                        kafka_client_config_file=write_properties(tmp_path))
    kafka.producer(settings).flush(0)
    kafka.consumer(settings, "group").close()


def test_bad_settings_name_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FRAUDSTREAM_KAFKA_CLIENT_CONFIG_FILE"):
        kafka.client_config(Settings(state_dir=tmp_path, kafka_client_config_file=tmp_path / "missing"))
    broken = tmp_path / "broken.properties"
    broken.write_text("security.protocol SASL_SSL\n")
    with pytest.raises(ValueError, match=r"broken\.properties:1: expected key=value"):
        kafka.client_config(Settings(state_dir=tmp_path, kafka_client_config_file=broken))
    with pytest.raises(ValueError, match="FRAUDSTREAM_KAFKA_BOOTSTRAP"):
        kafka.client_config(Settings(state_dir=tmp_path, kafka_client_config={"bootstrap.servers": "x:1"}))


def test_spark_source_options_are_kafka_prefixed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, spark_kafka_options={"security.protocol": "SASL_SSL"})
    assert kafka.spark_source_options(settings) == {"kafka.bootstrap.servers": settings.kafka_bootstrap,
                                                    "kafka.security.protocol": "SASL_SSL"}


#: Clients built outside the factories: only the local broker's own readiness probe (never a managed Kafka).
DIRECT_CLIENTS_ALLOWED = {"kafka.py", "services/kafka_broker.py"}


def test_every_client_is_built_by_the_factories() -> None:
    """The engines, simulator, console and demo reach Kafka only through fraudstream.kafka's factories,
    so the client settings cannot miss one of them."""
    direct = []
    for path in sorted(PROJECT.rglob("*.py")):
        relative = path.relative_to(PROJECT).as_posix()
        if relative in DIRECT_CLIENTS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("Producer", "Consumer", "AdminClient"):
                    direct.append(f"{relative}:{node.lineno} {name}(...)")
                if isinstance(node.func, ast.Attribute) and node.func.attr == "option" and node.args \
                        and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("kafka."):
                    direct.append(f"{relative}:{node.lineno} .option({node.args[0].value!r})")
    assert direct == []
