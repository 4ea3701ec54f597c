// Package fault drives kecho's reliability and security suite from the
// host:
//
//   - TestFaultInGuest boots the installed Debian kernel with kecho and
//     kechod and runs test/guestfault inside it: the datagram fuzzer, the
//     reflection and loop tests, max_pps under a flood, and the soak.
//   - TestDebugKernel runs the whole VM suite (test/guest, the daemon's
//     in-guest tests and test/guestfault) on the debug kernel that
//     test/debugkernel/build.sh builds (KASAN, lockdep, atomic-sleep and
//     work-object debugging, kmemleak) and fails on any report, including
//     a non-empty kmemleak scan at the end. With a cold cache it skips and
//     says that `make test-debug` builds the kernel.
//   - TestFuzzTargets runs every Go fuzz target under internal/ for a
//     bounded time.
//   - the hardening tests check the daemon's state file, its metrics
//     listener defaults and the packages' file modes.
//
// Environment: KECHO_FAULT_RUN filters the guest tests (-test.run),
// KECHO_FUZZ_DATAGRAMS and KECHO_SOAK_DURATION size the fuzz and the soak,
// KECHO_FUZZTIME runs each Go fuzz target from here for that -fuzztime
// (e.g. 200000x; unset, TestFuzzTargets skips: `make fuzz` runs them).
package fault
