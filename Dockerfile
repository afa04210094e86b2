# The fraudstream image: producers, processor, console, one-shot init (topics, schema, default model) and
# Spark master, workers and job (the pyspark wheel carries Spark; the Kafka connector jars are resolved
# here at build time, so nothing is downloaded at run time). Built FROM Debian's slim image; where no
# registry is reachable, scripts/docker-base-image.sh makes that image locally from Debian's archive.
# Written for both the classic builder and BuildKit (Debian's docker.io has no buildx).
ARG BASE_IMAGE=debian:bookworm-slim

# Jars from Maven Central (deploy/maven/spark/pom.xml), resolved once per pom change.
FROM ${BASE_IMAGE} AS jars
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update -q && apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN apt-get update -q && apt-get install -y -q --no-install-recommends maven \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/docker/build-trust /build/trust
COPY deploy/maven/spark/pom.xml /build/spark/pom.xml
RUN if [ -f /build/trust/cacerts ]; then export MAVEN_OPTS=-Djavax.net.ssl.trustStore=/build/trust/cacerts; fi \
 && mvn -q -B -f /build/spark/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory=/opt/fraudstream-jars/spark \
 && rm -rf /root/.m2

# Python dependencies pinned by constraints.txt, in a layer of their own (source changes do not touch it).
FROM ${BASE_IMAGE} AS python
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/docker/build-trust /build/trust
COPY pyproject.toml constraints.txt /src/
RUN if [ -f /build/trust/ca-certificates.crt ]; then export PIP_CERT=/build/trust/ca-certificates.crt; fi \
 && python3 -m venv /opt/fraudstream \
 && python3 -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > /src/requirements.txt \
 && /opt/fraudstream/bin/pip install -q -c /src/constraints.txt -r /src/requirements.txt

# The project as a wheel: the final stage adds it as a small layer of its own, so a source change neither
# reinstalls nor re-copies the dependencies.
FROM python AS project
RUN if [ -f /build/trust/ca-certificates.crt ]; then export PIP_CERT=/build/trust/ca-certificates.crt; fi \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install -q 'setuptools>=77' wheel
COPY README.md /src/
COPY fraudstream /src/fraudstream
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation --wheel-dir /wheels /src

# The final image: Python, a JRE for Spark, the venv and the jars; no compilers, Maven or caches.
FROM ${BASE_IMAGE}
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update -q && apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 libgomp1 procps curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/fraudstream fraudstream \
 && mkdir -p /var/lib/fraudstream/models /var/lib/fraudstream/model-signing /var/lib/fraudstream/spark-checkpoints \
 && chown -R fraudstream:fraudstream /var/lib/fraudstream
COPY --from=jars /opt/fraudstream-jars /opt/fraudstream-jars
COPY --from=python /opt/fraudstream /opt/fraudstream
COPY --from=project /wheels /tmp/wheels
RUN /opt/fraudstream/bin/pip install -q --no-cache-dir --no-deps --no-index --no-compile /tmp/wheels/*.whl \
 && /opt/fraudstream/bin/python -m compileall -q /opt/fraudstream/lib/python3.11/site-packages/fraudstream \
 && rm -rf /tmp/wheels
ENV PATH=/opt/fraudstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FRAUDSTREAM_STATE_DIR=/var/lib/fraudstream \
    FRAUDSTREAM_JARS_DIR=/opt/fraudstream-jars \
    SPARK_HOME=/opt/fraudstream/lib/python3.11/site-packages/pyspark
USER fraudstream
WORKDIR /var/lib/fraudstream
ENTRYPOINT ["fraudstream"]
CMD ["--help"]
