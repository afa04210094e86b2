# The fraudstream image: producers, processor, console, one-shot init (topics, schema, default model) and
# Spark master, workers and job (the pyspark wheel carries Spark; the Kafka connector jars are resolved
# here at build time, so nothing is downloaded at run time). Built FROM Debian's slim image; where no
# registry is reachable, scripts/docker-base-image.sh makes that image locally from Debian's archive.
#
# Needs BuildKit (Docker 23+ uses it by default; Debian's docker.io 20.10 with DOCKER_BUILDKIT=1; Compose
# v1 with COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1): its stages run in parallel and read
# deploy/docker/prefetched/ through bind mounts, so nothing from there lands in a layer.
# scripts/docker-images.sh fills that folder from what the host already has (the wheels pip resolved for
# the project's venv, the jars Maven resolved for the local services), each with the hash of the file it
# was resolved from; a stage uses them only when that hash matches and downloads otherwise.
ARG BASE_IMAGE=debian:bookworm-slim

# The Java runtime, in a layer of its own: the Kafka stand-in (deploy/docker/kafka) starts with the same
# instruction, so the two images share it.
FROM ${BASE_IMAGE} AS runtime
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update -q && apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 libgomp1 procps curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/fraudstream fraudstream \
 && mkdir -p /var/lib/fraudstream/models /var/lib/fraudstream/model-signing /var/lib/fraudstream/spark-checkpoints \
 && chown -R fraudstream:fraudstream /var/lib/fraudstream

# Spark's Kafka connector jars (deploy/maven/spark/pom.xml): the host's when they match the pom, else Maven.
FROM runtime AS jars
COPY deploy/maven/spark/pom.xml /build/spark/pom.xml
RUN --mount=type=bind,source=deploy/docker/prefetched,target=/prefetched \
    --mount=type=bind,source=deploy/docker/build-trust,target=/build/trust \
    set -e; mkdir -p /opt/fraudstream-jars; \
    if [ "$(cat /prefetched/jars/spark/.pom-sha256 2>/dev/null)" = "$(sha256sum /build/spark/pom.xml | cut -d' ' -f1)" ]; then \
      cp -r /prefetched/jars/spark /opt/fraudstream-jars/spark; \
    else \
      apt-get update -q && apt-get install -y -q --no-install-recommends maven; \
      if [ -f /build/trust/cacerts ]; then export MAVEN_OPTS=-Djavax.net.ssl.trustStore=/build/trust/cacerts; fi; \
      mvn -q -B -f /build/spark/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory=/opt/fraudstream-jars/spark; \
    fi; \
    rm -f /opt/fraudstream-jars/spark/.pom-sha256

# Python dependencies pinned by constraints.txt, in a layer of their own (source changes do not touch it):
# from the host's wheels when they were resolved from these very files, else from PyPI.
FROM ${BASE_IMAGE} AS python
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt /src/
RUN --mount=type=bind,source=deploy/docker/prefetched,target=/prefetched \
    --mount=type=bind,source=deploy/docker/build-trust,target=/build/trust \
    set -e; if [ -f /build/trust/ca-certificates.crt ]; then export PIP_CERT=/build/trust/ca-certificates.crt; fi; \
    python3 -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > /src/requirements.txt; \
    if [ "$(cat /prefetched/wheels/.requirements-sha256 2>/dev/null)" = "$(cat /src/pyproject.toml /src/constraints.txt | sha256sum | cut -d' ' -f1)" ]; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/prefetched/wheels; \
    fi; \
    python3 -m venv /opt/fraudstream; \
    /opt/fraudstream/bin/pip install -q -c /src/constraints.txt -r /src/requirements.txt; \
    python3 -m venv /opt/build; \
    /opt/build/bin/pip install -q 'setuptools>=77' wheel

# The project as a wheel: the final stage adds it as a small layer of its own, so a source change neither
# reinstalls nor re-copies the dependencies.
FROM python AS project
COPY README.md /src/
COPY fraudstream /src/fraudstream
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation --wheel-dir /wheels /src

# The final image: Python, a JRE for Spark, the venv and the jars; no compilers, Maven or caches.
FROM runtime
COPY --from=jars /opt/fraudstream-jars /opt/fraudstream-jars
COPY --from=python /opt/fraudstream /opt/fraudstream
RUN --mount=type=bind,from=project,source=/wheels,target=/tmp/wheels \
    /opt/fraudstream/bin/pip install -q --no-cache-dir --no-deps --no-index --no-compile /tmp/wheels/*.whl \
 && /opt/fraudstream/bin/python -m compileall -q /opt/fraudstream/lib/python3.11/site-packages/fraudstream
ENV PATH=/opt/fraudstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FRAUDSTREAM_STATE_DIR=/var/lib/fraudstream \
    FRAUDSTREAM_JARS_DIR=/opt/fraudstream-jars \
    SPARK_HOME=/opt/fraudstream/lib/python3.11/site-packages/pyspark
USER fraudstream
WORKDIR /var/lib/fraudstream
ENTRYPOINT ["fraudstream"]
CMD ["--help"]
