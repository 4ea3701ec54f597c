#!/bin/sh
# Install the Debian packages that building, the demos and the tests need.
# Idempotent: only missing packages are installed, and apt-get update runs
# only when something is missing.
set -eu

# Packages installed without their recommends (qemu would pull a desktop).
PACKAGES="
bc
bison
busybox-static
cpio
debootstrap
dkms
dwarves
e2fsprogs
flex
gcc
iproute2
kmod
libelf-dev
libssl-dev
libc6-dev
lintian
linux-headers-amd64
linux-image-amd64
linux-source-6.1
make
procps
qemu-system-x86
rpm
shellcheck
sparse
systemd
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root, or: sudo apt-get install --no-install-recommends$missing" >&2
	exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
