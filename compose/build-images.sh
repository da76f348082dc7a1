#!/usr/bin/env bash
# Builds the project's images locally, for machines that cannot pull from Docker Hub:
#   1. a Debian bookworm base with a Java 17 runtime and Python 3.11 (debootstrap rootfs
#      -> docker import), and
#   2. the Kafka broker image from the same Maven Central jars the embedded broker uses.
# Each image is built only when its tag is missing, so a second run takes a second.
# Prints the Kafka image tag on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(cat "$here/kafka/VERSION")
base_tag=${SAGA_BASE_IMAGE:-kafka-saga/debian-base:bookworm}
kafka_tag=${SAGA_LOCAL_KAFKA_IMAGE:-kafka-saga/kafka:${version}-local}
# The runtime image is tagged by a hash of what goes into it, so a change rebuilds it.
root=$(cd "$here/.." && pwd)
runtime_hash=$(cd "$root" && cat pyproject.toml compose/Dockerfile compose/stock.json \
  $(find saga services schemas topics compose/kafka -type f ! -name '*.pyc' \
    ! -path '*/__pycache__/*' | sort) \
  | sha256sum | cut -c1-12)
runtime_tag=${SAGA_LOCAL_RUNTIME_IMAGE:-kafka-saga/runtime:${runtime_hash}}
cache=${SAGA_IMAGE_CACHE:-/var/cache/kafka-saga}
mirror=${SAGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}

need() { command -v "$1" >/dev/null || { echo "build-images: '$1' is missing; install it ($2)" >&2; exit 1; }; }
need docker "apt-get install docker.io"
docker info >/dev/null 2>&1 || { echo "build-images: no Docker engine answers; start dockerd (see .ci/run)" >&2; exit 1; }

if docker image inspect "$base_tag" >/dev/null 2>&1; then
  echo "build-images: $base_tag present" >&2
else
  need debootstrap "apt-get install debootstrap"
  start=$(date +%s)
  rootfs="$cache/rootfs-bookworm"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  echo "build-images: debootstrap bookworm into $rootfs (about a minute)" >&2
  debootstrap --variant=minbase \
    --include=openjdk-17-jre-headless,python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { echo "build-images: debootstrap failed; see $cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$base_tag" >/dev/null
  rm -rf "$rootfs"
  echo "build-images: $base_tag built in $(( $(date +%s) - start ))s" >&2
fi

if docker image inspect "$kafka_tag" >/dev/null 2>&1; then
  echo "build-images: $kafka_tag present" >&2
else
  need mvn "apt-get install maven"
  start=$(date +%s)
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp "$here/kafka/Dockerfile" "$here/kafka/run-kafka.sh" "$here/kafka/log4j2.properties" "$ctx/"
  mvn -q -f "$here/kafka/pom.xml" dependency:copy-dependencies -Dkafka.version="$version" \
    -DincludeScope=runtime -DoutputDirectory="$ctx/libs" >&2
  docker build -q --build-arg BASE="$base_tag" -t "$kafka_tag" "$ctx" >/dev/null
  echo "build-images: $kafka_tag built in $(( $(date +%s) - start ))s" >&2
fi
if docker image inspect "$runtime_tag" >/dev/null 2>&1; then
  echo "build-images: $runtime_tag present" >&2
else
  start=$(date +%s)
  # The host's pip fetches the wheels (it trusts this network's TLS proxy; a container
  # would not), and the image installs from them alone.
  python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))
        ["project"]["dependencies"]))' "$root/pyproject.toml" > "$root/compose/wheels/requirements.txt"
  python3 -m pip wheel -q -w "$root/compose/wheels" "setuptools>=68" wheel \
    -r "$root/compose/wheels/requirements.txt" >&2
  docker build -q --network host --build-arg BASE="$base_tag" \
    --build-arg PIP_OPTIONS="--no-index --find-links /wheels" -t "$runtime_tag" \
    -f "$root/compose/Dockerfile" "$root" >/dev/null
  echo "build-images: $runtime_tag built in $(( $(date +%s) - start ))s" >&2
fi
echo "$runtime_tag" > "${SAGA_RUNTIME_TAG_FILE:-/dev/null}"
echo "$kafka_tag"
