#!/bin/sh
# Entrypoint of the locally built Kafka image. It takes the same environment as the
# official apache/kafka image, so one compose file and one test suite serve both:
#   KAFKA_FOO_BAR=x      -> foo.bar=x   (___ -> '-', __ -> '_')
#   CLUSTER_ID           -> the KRaft cluster id used to format empty storage
# KAFKA_HEAP_OPTS / KAFKA_OPTS / KAFKA_LOG4J_OPTS pass through to the JVM.
set -eu
conf=/opt/kafka/config/server.properties
mkdir -p /opt/kafka/config
: > "$conf"
env | grep '^KAFKA_' | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_LOG4J_OPTS|KAFKA_JMX_OPTS|KAFKA_VERSION|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_GC_LOG_OPTS) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
  # The value is everything after the first '=' (values may contain '=').
  printf '%s=%s\n' "$key" "${value}" >> "$conf"
done
if ! grep -q '^log.dirs=' "$conf"; then echo 'log.dirs=/tmp/kraft-combined-logs' >> "$conf"; fi
log_dirs=$(sed -n 's/^log.dirs=//p' "$conf" | cut -d, -f1)
cp="/opt/kafka/libs/*"
if [ ! -f "$log_dirs/meta.properties" ]; then
  java -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$conf"
fi
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} ${KAFKA_OPTS:-} \
  ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties} \
  -cp "$cp" kafka.Kafka "$conf"
