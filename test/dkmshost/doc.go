// Package dkmshost tests kecho's DKMS tree (dkms/) with the real dkms on
// this host: the tree is added, built and installed for an installed
// Debian kernel whose headers are present (not necessarily the running
// one), and the installed module must carry that kernel's vermagic and the
// package version as MODULE_VERSION. Everything it adds to DKMS and
// /usr/src is removed again.
//
// The unit tests here (dkms.conf contract, supported-kernel regex) need
// nothing. The DKMS test needs root, dkms, modinfo and a kernel with
// headers (`make deps` installs them); without them it skips, except
// under KECHO_REQUIRE_VM=1 (`make test`), where that is a failure.
//
//	sudo go test ./test/dkmshost/ -run DKMS -v
//	KECHO_DKMS_KERNEL=6.1.0-57-amd64 sudo -E go test ./test/dkmshost/
package dkmshost
