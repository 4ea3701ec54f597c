// Package guest holds kecho's in-guest tests. They need a kernel that can
// load kecho, real kmod, iproute2 and root, so they run only inside the
// qemu guest that test/vm boots: every test file carries the build tag
// "kechoguest", and `go test ./test/vm` (TestModuleInGuest) builds them
// with `CGO_ENABLED=0 go test -c -tags kechoguest`, boots the installed
// Debian kernel with the module and runs them there, reporting each as a
// subtest. On the host, without the tag, this package has no tests.
//
// Run them with:
//
//	go test -v -run TestModuleInGuest ./test/vm                 # all
//	KECHO_GUEST_RUN=TestEcho go test -v -run TestModuleInGuest ./test/vm
//
// The tests load and unload kecho themselves with modprobe/insmod/rmmod
// and leave it unloaded; each one starts from an unloaded module.
package guest
