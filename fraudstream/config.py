"""One Settings object for every command: defaults that run on one machine, every endpoint overridable.

Environment variables use the prefix ``FRAUDSTREAM_`` (for example ``FRAUDSTREAM_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Roles of the local PostgreSQL started by `fraudstream services up`: the engines, the console and the
#: migrations use the application role (owner of the project database, not a superuser); only the
#: service manager uses the administrator, to create that role and database.
POSTGRES_APP_ROLE = "fraudstream"
POSTGRES_ADMIN_ROLE = "fraudstream_admin"


class Settings(BaseSettings):
    """Endpoints, ports and names shared by the CLI, the engines, the tests and the benchmarks."""

    model_config = SettingsConfigDict(env_prefix="FRAUDSTREAM_", extra="ignore")

    #: Empty means "the local broker started by `fraudstream services up`" (localhost:kafka_port).
    kafka_bootstrap: str = ""
    #: Empty means "the local PostgreSQL started by `fraudstream services up`" (127.0.0.1:postgres_port, the
    #: application role, its password read by libpq from the generated ``postgres_passfile``).
    database_url: str = ""
    state_dir: Path = Field(default_factory=lambda: Path.cwd() / ".fraudstream")
    #: Jars resolved ahead of time, one folder per deploy/maven/<name> (the container image sets it);
    #: empty means "resolve them with Maven into state_dir/jars on first use".
    jars_dir: Path | None = None
    #: The key that signs model manifests; empty means ``model-signing.key`` beside the models directory
    #: (in the state directory), never inside it. Created (mode 0600) when the first model is published.
    model_signing_key_file: Path | None = None

    #: librdkafka settings (SASL/SSL for a managed Kafka, timeouts, ...) given to every Kafka client the
    #: project creates: a properties file of ``key=value`` lines (``#`` comments), then
    #: ``kafka_client_config`` (env FRAUDSTREAM_KAFKA_CLIENT_CONFIG, a JSON object) on top of it.
    kafka_client_config_file: Path | None = None
    kafka_client_config: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: The Spark job's Kafka source options in Java client names (``security.protocol``,
    #: ``sasl.jaas.config``, ...), passed as ``kafka.<key>``: the JVM client does not read librdkafka's.
    spark_kafka_options: dict[str, str] = Field(default_factory=dict)

    # Local services started by `fraudstream services up` (ignored when pointing at existing ones).
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    postgres_port: int = 54329
    spark_master_port: int = 7077
    spark_master_webui_port: int = 8080
    spark_worker_webui_port: int = 8081
    spark_workers: int = 2
    prometheus_port: int = 19090

    # Topics
    transactions_topic: str = "raw_transactions"
    labels_topic: str = "transaction_labels"
    alerts_topic: str = "fraud_alerts"
    dlq_topic: str = "raw_transactions_dlq"
    transactions_partitions: int = 6
    topic_partitions: int = 3
    topic_retention_ms: int = 7 * 24 * 3600 * 1000

    # Label maturity of training from the database (fraudstream.model.maturity): a fraud label (chargeback)
    # arrives within fraud_label_days of the transaction, a legitimate one within legitimate_label_days.
    fraud_label_days: float = 21.0
    legitimate_label_days: float = 45.0

    #: An event dated more than this after it was received (its Kafka timestamp, else the read time) is
    #: dead-lettered as event_time_in_future: a producer's wrong clock must not move the features' clock.
    event_time_future_tolerance_s: float = Field(default=300.0, ge=0)
    # Analyst console (`fraudstream console`)
    console_host: str = "127.0.0.1"
    console_port: int = 8000
    #: The first start creates user `admin` with this password; empty: a random one, printed once and
    #: kept (mode 0600) in state_dir/console-admin-password.
    console_admin_password: str = ""
    console_session_hours: float = 12.0
    #: How long a claim locks a case to its analyst.
    console_claim_minutes: float = 15.0
    console_verdicts_per_minute: int = 30
    #: How often the overview's one shared query loop refreshes (seconds).
    console_overview_interval_s: float = 3.0

    @model_validator(mode="after")
    def _local_endpoints(self) -> Settings:
        self.state_dir = self.state_dir.resolve()
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = f"localhost:{self.kafka_port}"
        if not self.database_url:
            self.database_url = (f"postgresql://{POSTGRES_APP_ROLE}@127.0.0.1:{self.postgres_port}/fraudstream"
                                 f"?passfile={quote(str(self.postgres_passfile), safe='/')}")
        return self

    @property
    def postgres_passfile(self) -> Path:
        """The local PostgreSQL's generated passwords (libpq passfile format, mode 0600)."""
        return self.state_dir / "postgres.pgpass"

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def postgres_db(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
