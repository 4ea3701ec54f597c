/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared helpers of the benchmark's C programs (echo server, sink, load
 * generator): clocks, socket buffers, command-line numbers.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

/* Datagrams per recvmmsg/sendmmsg call. */
#define BENCH_BATCH	64
/* Largest payload the programs handle (IPv4 UDP maximum). */
#define BENCH_MAX_PAYLOAD	65507
/* Socket buffer size asked for, as kecho's own (SO_RCVBUF semantics). */
#define BENCH_SOCK_BUF	(2 << 20)

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

static inline long num_arg(const char *s, const char *name)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0) {
		fprintf(stderr, "%s: not a number: %s\n", name, s);
		exit(2);
	}
	return v;
}

/*
 * Socket buffers as kecho sets them: SO_RCVBUFFORCE/SO_SNDBUFFORCE (root),
 * falling back to the limited forms.
 */
static inline void set_bufs(int fd)
{
	int v = BENCH_SOCK_BUF;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	v = BENCH_SOCK_BUF * 2;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

#endif /* BENCH_COMMON_H */
