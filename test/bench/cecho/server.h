/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the benchmark's two servers (cecho, sink) share: the "-p PORT"
 * command line, the stop flag that SIGTERM and SIGINT raise, and the bound
 * UDP socket.
 */
#ifndef BENCH_SERVER_H
#define BENCH_SERVER_H

#include "common.h"

#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

/* Raised by SIGTERM or SIGINT; the server prints its figures and exits. */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/*
 * server_socket - parse "-p PORT" (default port), install the stop handler
 * and return a UDP socket bound to 0.0.0.0:PORT with kecho's buffer sizes.
 * The handler has no SA_RESTART, so a signal ends a blocking recvmmsg().
 */
static int server_socket(int argc, char **argv, const char *prog, int port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct sigaction sa = { .sa_handler = on_signal };
	int opt, fd;

	while ((opt = getopt(argc, argv, "p:")) != -1) {
		if (opt != 'p') {
			fprintf(stderr, "usage: %s -p PORT\n", prog);
			exit(2);
		}
		port = (int)num_arg(optarg, "-p");
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket");
	set_bufs(fd);
	addr.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)))
		die("bind");
	return fd;
}

#endif /* BENCH_SERVER_H */
