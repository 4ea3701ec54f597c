# kecho_start_daemon: kechod may have been started before the module existed
# for the running kernel; start it now if it is enabled (a running daemon is
# left alone). Only when systemd runs; never fails.
kecho_start_daemon() {
	if [ -d "$KECHO_SYSTEMD_RUNDIR" ] && kecho_running_kernel_built &&
		command -v systemctl >/dev/null 2>&1 &&
		systemctl is-enabled --quiet kechod.service 2>/dev/null; then
		systemctl start kechod.service >/dev/null 2>&1 ||
			kecho_log "kechod.service did not start; see: journalctl -u kechod" >&2
	fi
	return 0
}
