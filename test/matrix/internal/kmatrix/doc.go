// Package kmatrix builds kecho against every Debian kernel series in a
// kernel list (test/matrix/kernels.txt) and boots several of them.
//
// For each line (series, suite) it resolves the kernel ABI from the suite's
// linux-headers-amd64 metapackage through a private apt configuration (the
// host's sources are never touched), downloads the headers, their -common
// and linux-kbuild packages and, for boot rows, the image into
// ${KECHO_CACHE_DIR:-~/.cache/kecho}/matrix, extracts them there with
// dpkg-deb, and builds a copy of the module tree with the compiler the
// kernel was built with: on the host when the suite is the host's release,
// otherwise inside a debootstrapped chroot of the suite. The headers are
// made visible at their packaged /usr/src and /usr/lib paths through
// read-only overlay mounts in a private mount namespace, so nothing is
// installed on the host.
//
// Everything that runs a program goes through Runner, so the planning,
// parsing and command construction are unit-tested with a fake.
package kmatrix
