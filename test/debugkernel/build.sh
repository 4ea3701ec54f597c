#!/bin/bash
# Build kecho's debug guest kernel from Debian's linux-source-6.1 and install
# it into a Debian-like tree that the VM harness boots (vm.KernelFromRoot):
#
#   $KECHO_CACHE_DIR/debugkernel/<key>/root/boot/vmlinuz-<release>
#   $KECHO_CACHE_DIR/debugkernel/<key>/root/lib/modules/<release>/{build -> tree}
#
# <key> is the source package version plus a hash of guest.config and
# RECIPE below (bump it when the build steps change), so a changed fragment
# or recipe builds a new kernel. The build runs niced (nice -n 19 make
# -j${KECHO_DEBUGKERNEL_JOBS:-2}) and takes about an hour on two shared
# cores; it prints the root directory on its last line. A finished build is
# marked by root/READY.
#
#   build.sh           build unless cached; print the root
#   build.sh --cached  print the root if the kernel is cached, else say why
#                      on stderr and exit 3 (nothing is built)
set -euo pipefail

RECIPE=1

here=$(cd "$(dirname "$0")" && pwd)
cache=${KECHO_CACHE_DIR:-$HOME/.cache/kecho}/debugkernel
jobs=${KECHO_DEBUGKERNEL_JOBS:-2}
tarball=/usr/src/linux-source-6.1.tar.xz

if [ ! -f "$tarball" ]; then
	echo "debugkernel: $tarball missing (apt-get install linux-source-6.1, or make deps)" >&2
	[ "${1:-}" = "--cached" ] && exit 3
	exit 1
fi
srcver=$(dpkg-query -W -f '${Version}' linux-source-6.1)
hash=$( (cat "$here/guest.config"; echo "recipe $RECIPE") | sha256sum | cut -c1-12)
key="6.1-${srcver}-${hash}"
dir="$cache/$key"
root="$dir/root"

if [ -f "$root/READY" ]; then
	echo "$root"
	exit 0
fi
if [ "${1:-}" = "--cached" ]; then
	echo "debugkernel: no debug kernel cached in $dir (linux-source-6.1 $srcver, guest.config $hash); \`make test-debug\` builds it" >&2
	exit 3
fi

mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if [ -f "$root/READY" ]; then
	echo "$root"
	exit 0
fi

tree="$dir/linux"
if [ ! -f "$tree/Makefile" ]; then
	echo "debugkernel: extracting $tarball (source $srcver) into $tree" >&2
	rm -rf "$tree" "$dir/extract"
	mkdir -p "$dir/extract"
	tar -C "$dir/extract" -xf "$tarball"
	mv "$dir/extract"/linux-source-6.1 "$tree"
	rmdir "$dir/extract"
fi

cd "$tree"
echo "debugkernel: configuring (allnoconfig + guest.config)" >&2
make -s KCONFIG_ALLCONFIG="$here/guest.config" allnoconfig >&2
# Every line of the fragment must have survived: a dropped option (an unmet
# dependency) would silently lose a debug feature.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		if ! grep -qxF "$line" .config; then
			echo "debugkernel: guest.config: '$line' not in the resulting .config: $(grep "^${line%%=*}=\|^# ${line%%=*} " .config || echo unset)" >&2
			bad=1
		fi
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		if grep -q "^$sym=" .config; then
			echo "debugkernel: guest.config: $sym should be unset but is $(grep "^$sym=" .config)" >&2
			bad=1
		fi
		;;
	esac
done <"$here/guest.config"
if [ "$bad" != 0 ]; then
	exit 1
fi

echo "debugkernel: building with nice -n 19 make -j$jobs (log: $dir/build.log)" >&2
start=$(date +%s)
if ! nice -n 19 make -j"$jobs" bzImage modules >"$dir/build.log" 2>&1; then
	tail -n 40 "$dir/build.log" >&2
	echo "debugkernel: build failed, full log: $dir/build.log" >&2
	exit 1
fi
release=$(make -s kernelrelease)
rm -rf "$root"
mkdir -p "$root/boot"
cp arch/x86/boot/bzImage "$root/boot/vmlinuz-$release"
cp .config "$root/boot/config-$release"
make -s INSTALL_MOD_PATH="$root" modules_install >&2
ln -sfn "$tree" "$root/lib/modules/$release/build"
echo "built in $(($(date +%s) - start))s: $release from linux-source-6.1 $srcver" >"$root/READY"
echo "debugkernel: $(cat "$root/READY")" >&2
echo "$root"
