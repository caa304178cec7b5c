#!/usr/bin/env bash
# Install the Debian packages the whole test suite needs (real OCI clients,
# the peer registry, load generator, fixture tools).
#
# Idempotent: when every package is already installed it does nothing and
# returns at once (no `apt-get update`), so re-runs are fast.
set -euo pipefail

PACKAGES=(
  # real clients the end-to-end tests drive
  podman buildah skopeo umoci docker.io
  # container runtime + rootless helpers used by podman/buildah/docker
  runc conmon uidmap fuse-overlayfs slirp4netns containernetworking-plugins
  # peer registry (CNCF Distribution) and load generator for benchmarks
  docker-registry wrk
  # fixtures and harness helpers
  busybox-static curl jq ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg-query prints "install ok installed" only for fully installed packages
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-test-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-test-deps: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Retry once: mirrors occasionally fail mid-update on fresh machines.
"${SUDO[@]}" apt-get update -q || { sleep 5; "${SUDO[@]}" apt-get update -q; }
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
  || { sleep 5; "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; }

# docker.io's postinst may try to start the service; nothing here relies on
# that: tests start their own dockerd by hand.
echo "install-test-deps: done"
