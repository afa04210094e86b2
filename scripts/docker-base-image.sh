#!/usr/bin/env bash
# The base image every fraudstream Dockerfile starts FROM (debian:bookworm-slim), made here from Debian's
# archive when no image registry is reachable: debootstrap a minimal bookworm, `docker import` it under
# the same tag. Does nothing when the tag already exists (pulled from a registry or built before).
# Needs root (debootstrap) and a running Docker daemon (scripts/install-docker.sh).
set -euo pipefail

tag=${1:-${FRAUDSTREAM_BASE_IMAGE:-debian:bookworm-slim}}
suite=bookworm

if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "building $tag needs root (debootstrap); rerun as root or pull the image from a registry" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: run scripts/install-docker.sh" >&2; exit 1; }

# The mirror this machine's apt already uses (deb822 or one-line sources), Debian's CDN otherwise.
mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
  /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /tmp/fraudstream-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building base image $tag: debootstrap --variant=minbase $suite from $mirror (a few minutes, once)"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  echo "debootstrap failed; last lines of $root.log:" >&2; tail -n 20 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# What the official slim image configures: the same apt sources, no recommends, no docs or caches.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian*}/debian-security $suite-security main
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --message "debootstrap --variant=minbase $suite" - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
