# Shared by every kecho-dkms maintainer script and scriptlet; the packager
# inlines this file and replaces @VERSION@ with the package version.
# POSIX sh. Every function is idempotent.

KECHO_MODULE=kecho
KECHO_VERSION='@VERSION@'
# Overridable for tests only; an installed system never sets these.
KECHO_SRC="${KECHO_SRC_DIR:-/usr/src}/$KECHO_MODULE-$KECHO_VERSION"
KECHO_MODULES_DIR="${KECHO_MODULES_DIR:-/lib/modules}"
KECHO_LOG_DIR="${KECHO_LOG_DIR:-/var/log/kecho-dkms}"
KECHO_SYSTEMD_RUNDIR="${KECHO_SYSTEMD_RUNDIR:-/run/systemd/system}"
KECHO_DKMS_TREE="${KECHO_DKMS_TREE:-/var/lib/dkms}"
# Set by the rpm %post of an upgrade or downgrade.
KECHO_FORCE_INSTALL=""

kecho_log() {
	echo "kecho-dkms: $*"
}

# kecho_is_added: is kecho/<this version> known to DKMS at all?
kecho_is_added() {
	dkms status -m "$KECHO_MODULE" -v "$KECHO_VERSION" 2>/dev/null | grep -q "^${KECHO_MODULE}[/,]"
}

# kecho_is_installed KERNEL: is kecho/<this version> installed for KERNEL?
kecho_is_installed() {
	dkms status -m "$KECHO_MODULE" -v "$KECHO_VERSION" -k "$1" 2>/dev/null | grep -q ': installed'
}

# kecho_exclusive_regex: dkms.conf's BUILD_EXCLUSIVE_KERNEL, unquoted.
kecho_exclusive_regex() {
	[ -f "$KECHO_SRC/dkms.conf" ] || return 0
	sed -n 's/^[[:space:]]*BUILD_EXCLUSIVE_KERNEL=//p' "$KECHO_SRC/dkms.conf" | tail -n 1 |
		sed -e 's/^"\(.*\)"[[:space:]]*$/\1/' -e "s/^'\(.*\)'[[:space:]]*\$/\1/"
}

# kecho_kernels: installed kernel releases, the running one first.
kecho_kernels() {
	running=$(uname -r)
	if [ -d "$KECHO_MODULES_DIR/$running" ]; then
		echo "$running"
	fi
	for dir in "$KECHO_MODULES_DIR"/*; do
		[ -d "$dir" ] || continue
		release=${dir##*/}
		[ "$release" = "$running" ] && continue
		echo "$release"
	done
}

kecho_add() {
	if kecho_is_added; then
		kecho_log "$KECHO_MODULE/$KECHO_VERSION is already added to DKMS"
		return 0
	fi
	if [ ! -f "$KECHO_SRC/dkms.conf" ]; then
		kecho_log "error: $KECHO_SRC/dkms.conf is missing; reinstall kecho-dkms" >&2
		return 1
	fi
	dkms add -m "$KECHO_MODULE" -v "$KECHO_VERSION"
}

# kecho_build_one KERNEL: build and install for one kernel. A failure is
# reported with the path of its build log and leaves kecho/<version> merely
# "added" for that kernel (no half-built state), so that `dkms autoinstall`
# or the next kernel/headers installation retries it.
kecho_build_one() {
	kernel=$1
	if kecho_is_installed "$kernel"; then
		kecho_log "$kernel: already built and installed"
		KECHO_BUILT="$KECHO_BUILT $kernel"
		return 0
	fi
	kecho_log "$kernel: building $KECHO_MODULE/$KECHO_VERSION"
	rc=0
	if [ -n "${KECHO_FORCE_INSTALL:-}" ]; then
		# rpm upgrade/downgrade: the old version's kecho.ko is still in
		# place (its %preun runs after this %post) and DKMS' version check
		# would keep it ("not newer than what is already found") while
		# recording this version as installed.
		dkms install --force -m "$KECHO_MODULE" -v "$KECHO_VERSION" -k "$kernel" || rc=$?
	else
		dkms install -m "$KECHO_MODULE" -v "$KECHO_VERSION" -k "$kernel" || rc=$?
	fi
	if [ "$rc" -eq 0 ]; then
		kecho_log "$kernel: installed $KECHO_MODULE.ko"
		KECHO_BUILT="$KECHO_BUILT $kernel"
		return 0
	fi
	if [ "$rc" -eq 77 ]; then
		# dkms' own verdict: BUILD_EXCLUSIVE_* does not match this kernel.
		kecho_log "$kernel: skipped: dkms reports it is outside the supported range (BUILD_EXCLUSIVE_* in $KECHO_SRC/dkms.conf)"
		KECHO_SKIPPED="$KECHO_SKIPPED $kernel"
		return 0
	fi
	# Keep the log: the shared build directory is reused by the next kernel.
	log="$KECHO_DKMS_TREE/$KECHO_MODULE/$KECHO_VERSION/build/make.log"
	saved="$KECHO_LOG_DIR/make-$kernel.log"
	if [ -f "$log" ] && mkdir -p "$KECHO_LOG_DIR" 2>/dev/null && cp "$log" "$saved" 2>/dev/null; then
		log=$saved
	fi
	kecho_log "$kernel: BUILD FAILED (dkms exit status $rc); build log: $log" >&2
	# Drop whatever a failed install left for this kernel (built but not
	# installed), keeping the source registered.
	if dkms status -m "$KECHO_MODULE" -v "$KECHO_VERSION" -k "$kernel" 2>/dev/null | grep -q ': built'; then
		dkms unbuild -m "$KECHO_MODULE" -v "$KECHO_VERSION" -k "$kernel" >/dev/null 2>&1 ||
			dkms remove -m "$KECHO_MODULE" -v "$KECHO_VERSION" -k "$kernel" >/dev/null 2>&1 || true
	fi
	KECHO_FAILED="$KECHO_FAILED $kernel"
	return 0
}

# kecho_build_all: build + install for every installed kernel that has
# headers and is in dkms.conf's supported range; name each one skipped.
kecho_build_all() {
	KECHO_BUILT=""
	KECHO_FAILED=""
	KECHO_SKIPPED=""
	regex=$(kecho_exclusive_regex)
	for kernel in $(kecho_kernels); do
		if [ ! -d "$KECHO_MODULES_DIR/$kernel/kernel" ] && [ ! -e "/boot/vmlinuz-$kernel" ]; then
			kecho_log "$kernel: skipped: no kernel image installed (only leftovers in $KECHO_MODULES_DIR/$kernel)"
			KECHO_SKIPPED="$KECHO_SKIPPED $kernel"
			continue
		fi
		if [ ! -d "$KECHO_MODULES_DIR/$kernel/build" ]; then
			kecho_log "$kernel: skipped: no kernel headers ($KECHO_MODULES_DIR/$kernel/build is missing; install the headers package for $kernel, e.g. linux-headers-$kernel or kernel-devel-$kernel)"
			KECHO_SKIPPED="$KECHO_SKIPPED $kernel"
			continue
		fi
		if [ -n "$regex" ] && ! printf '%s\n' "$kernel" | grep -Eq -- "$regex"; then
			kecho_log "$kernel: skipped: outside the supported range (BUILD_EXCLUSIVE_KERNEL=\"$regex\" in $KECHO_SRC/dkms.conf)"
			KECHO_SKIPPED="$KECHO_SKIPPED $kernel"
			continue
		fi
		kecho_build_one "$kernel"
	done
	kecho_log "summary for $KECHO_MODULE/$KECHO_VERSION: installed for:${KECHO_BUILT:- none}; failed:${KECHO_FAILED:- none}; skipped:${KECHO_SKIPPED:- none}"
	if [ -n "$KECHO_FAILED" ]; then
		kecho_log "the package stays installed; fix the cause (see the build log), then run:" >&2
		for kernel in $KECHO_FAILED; do
			kecho_log "  dkms install -m $KECHO_MODULE -v $KECHO_VERSION -k $kernel" >&2
		done
	fi
}

# kecho_remove: unregister this package's own version, from every kernel.
# Other versions of kecho in DKMS are never touched.
kecho_remove() {
	kecho_remove_version "$KECHO_VERSION"
}

# kecho_remove_version VERSION: unregister VERSION from every kernel.
kecho_remove_version() {
	ver=$1
	if ! dkms status -m "$KECHO_MODULE" -v "$ver" 2>/dev/null | grep -q "^${KECHO_MODULE}[/,]"; then
		return 0
	fi
	if ! dkms remove -m "$KECHO_MODULE" -v "$ver" --all; then
		kecho_log "warning: 'dkms remove -m $KECHO_MODULE -v $ver --all' failed; check 'dkms status'" >&2
	fi
}

# kecho_running_kernel_built: was the module installed for the running kernel
# by the last kecho_build_all?
kecho_running_kernel_built() {
	running=$(uname -r)
	case " $KECHO_BUILT " in
	*" $running "*) return 0 ;;
	esac
	return 1
}
