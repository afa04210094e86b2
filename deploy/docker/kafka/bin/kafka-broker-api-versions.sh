#!/bin/bash
# The official image's script of the same name (the compose healthcheck calls it in both images).
exec java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp '/opt/kafka/libs/*' \
  -Dlog4j2.configurationFile=/opt/kafka/log4j2.yaml org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
