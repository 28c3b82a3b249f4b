#!/bin/sh
# Makes (once) the Debian base image the container tests build on, without a registry: debootstrap a
# minimal bookworm with python3, python3-venv and ca-certificates, then `docker import` it. Reused
# while the image exists. The host's CA bundle goes in, and pip is told to use it: HTTPS from inside a
# container here is re-signed by a CA the host trusts (pip otherwise trusts only its own bundle).
#
#   tests/containers/local_base.sh [IMAGE]      (default mmpp-ci/debian:bookworm; prints the image)
set -eu
image="${1:-mmpp-ci/debian:bookworm}"
mirror="${MMPP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "local_base.sh: debootstrap is not installed" >&2; exit 1; }
root="$(mktemp -d /var/tmp/mmpp-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "local_base.sh: debootstrap bookworm into $root" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >&2
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$image" >/dev/null
echo "$image"
