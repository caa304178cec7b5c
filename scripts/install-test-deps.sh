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
  # container runtime + helpers used by podman/buildah/docker
  runc conmon uidmap fuse-overlayfs slirp4netns containernetworking-plugins
  # peer registry (CNCF Distribution) and load generator for benchmarks
  docker-registry wrk
  # fixtures and harness helpers (util-linux gives flock, mount gives umount)
  busybox-static curl jq ca-certificates util-linux mount procps git
  # builder fixtures: a Debian base with dnf+rpm, RPMs built from tiny specs,
  # repo metadata, and attr/libcap tools to check xattrs and file capabilities
  mmdebstrap rpm createrepo-c attr libcap2-bin python3 postgresql
  # package-database tests: Berkeley DB tools, sqlite3, gpg for signed RPMs
  db5.3-util sqlite3 gnupg
  # RUN --mount=type=ssh tests: ssh-agent, ssh-add, ssh-keygen
  openssh-client
  # TLS tests: a throwaway CA and server certificates
  openssl
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

if [[ $(id -u) -ne 0 ]]; then
  exec sudo --preserve-env=CI "$0" "$@"
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Installing docker.io must not start a system Docker daemon: the tests start
# their own dockerd by hand. A policy-rc.d answering 101 tells invoke-rc.d
# not to start services (most container images already ship one).
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# installed by kiln scripts/install-test-deps.sh for the duration of apt-get\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

apt_install() {
  apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
}
# Retry once: mirrors occasionally fail mid-update on fresh machines.
apt-get update -q || { sleep 5; apt-get update -q; }
apt_install || { sleep 5; apt-get update -q; apt_install; }
echo "install-test-deps: done"
