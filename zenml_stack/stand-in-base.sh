#!/usr/bin/env bash
# A stand-in for the Dockerfile's base image where no registry can be reached (sftcast's CI):
# Debian bookworm from Debian's packages (debootstrap), whose Python is 3.11 as in the official
# python:3.11-slim-bookworm, imported into podman under that name. Elsewhere the real base is
# pulled and this script is not needed. Wheels on the machine (PIP_FIND_LINKS, e.g. a torch
# CPU wheel) go in too, for pip to find without a network. Idempotent; needs root.
set -euo pipefail
IMAGE=${1:-docker.io/library/python:3.11-slim-bookworm}
if podman image exists "$IMAGE"; then
    echo "$IMAGE: present"
    exit 0
fi
if timeout 120 podman pull -q "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE: pulled"
    exit 0
fi
echo "$IMAGE: cannot be pulled here; building a stand-in from Debian's packages"
ROOTFS=$(mktemp -d /var/tmp/sftcast-base.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3.11,python3-pip,python3-venv,ca-certificates \
    bookworm "$ROOTFS" http://deb.debian.org/debian
# as in the official image: `python` on PATH (ZenML's entrypoint calls it), and pip installs
# into the system (Debian marks its Python as managed by apt)
ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/python"
rm -f "$ROOTFS"/usr/lib/python3.11/EXTERNALLY-MANAGED
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
# the machine's trust store: where a TLS-inspecting proxy stands between it and the package
# registries, pip inside the image must trust that proxy's CA as the machine does
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$ROOTFS/opt/wheels"
for dir in ${PIP_FIND_LINKS:-}; do
    cp "$dir"/*.whl "$ROOTFS/opt/wheels/" 2>/dev/null || true
done
tar -C "$ROOTFS" -c . | podman import \
    --change 'ENV PIP_FIND_LINKS=/opt/wheels' --change 'CMD ["python3.11"]' - "$IMAGE"
echo "$IMAGE: built from Debian's packages (a stand-in for the official image)"
