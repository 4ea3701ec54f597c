// Package guestfault holds kecho's in-guest fault, fuzz, reflection and
// soak tests. Like test/guest they need a kernel that can load kecho, real
// kmod and iproute2, network namespaces and root, so every test file
// carries the build tag "kechoguest" and runs only inside the qemu guest
// that test/vm boots; test/fault drives them (TestFaultInGuest on the
// installed Debian kernel, TestDebugKernel on the debug kernel built by
// test/debugkernel).
//
//	go test -v -run TestFaultInGuest ./test/fault
//	KECHO_FAULT_RUN=TestFuzz go test -v -run TestFaultInGuest ./test/fault
//
// Knobs (environment, passed into the guest by test/fault):
//
//	KECHO_FUZZ_DATAGRAMS  datagrams in the fuzz's dual-stack pass (default 8000;
//	                      the IPv4-only pass sends a third of that)
//	KECHO_SOAK_DURATION   length of the soak (default 2m)
//
// Every test loads and unloads kecho itself and leaves it unloaded.
package guestfault
