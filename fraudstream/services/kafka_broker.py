"""A single-node Apache Kafka 4.x broker in KRaft mode (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from fraudstream.config import Settings
from fraudstream.services.exceptions import ServiceError
from fraudstream.services.maven import project_jars
from fraudstream.services.process import ManagedProcess, port_open

LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka
        level: INFO
      - name: org.apache.kafka
        level: WARN
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def kafka_home(settings: Settings) -> Path:
    return settings.state_dir / "kafka"


def server_properties(settings: Settings, data_dir: Path) -> str:
    controller = settings.kafka_controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://localhost:{settings.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}",
        f"num.partitions={settings.topic_partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=6",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "message.max.bytes=2097152",
        "auto.create.topics.enable=false",
        "",
    ])


def broker_process(settings: Settings, jars: Path | None = None) -> ManagedProcess:
    home = kafka_home(settings)
    classpath = f"{jars or (settings.jars_dir or settings.state_dir / 'jars') / 'kafka'}/*"
    return ManagedProcess(
        name="kafka",
        command=["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC",
                 f"-Dlog4j2.configurationFile={home / 'log4j2.yaml'}",
                 "-cp", classpath, "kafka.Kafka", str(home / "server.properties")],
        pid_file=home / "kafka.pid",
        log_file=home / "kafka.log",
        marker=str(home / "server.properties"),
        ports={settings.kafka_port: "FRAUDSTREAM_KAFKA_PORT",
               settings.kafka_controller_port: "FRAUDSTREAM_KAFKA_CONTROLLER_PORT"},
    )


def healthy(settings: Settings) -> bool:
    """A metadata request to the local broker succeeds."""
    if not port_open(settings.kafka_port):
        return False
    try:
        client = AdminClient({"bootstrap.servers": f"localhost:{settings.kafka_port}"})
        return len(client.list_topics(timeout=1).brokers) > 0
    except KafkaException:
        return False


def prepare(settings: Settings) -> Path:
    """Jars, configuration and a formatted KRaft log directory; returns the jar directory."""
    if shutil.which("java") is None:
        raise ServiceError("Java is required for Kafka: apt-get install openjdk-17-jre-headless")
    jars = project_jars(settings, "kafka")
    home = kafka_home(settings)
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (home / "server.properties").write_text(server_properties(settings, data))
    (home / "log4j2.yaml").write_text(LOG4J2)
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            ["java", "-cp", f"{jars}/*", f"-Dlog4j2.configurationFile={home / 'log4j2.yaml'}",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(home / "server.properties")],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")
    return jars
