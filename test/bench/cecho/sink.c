// SPDX-License-Identifier: GPL-2.0
/*
 * sink: the benchmark's ceiling. A recvmmsg() socket that answers nothing,
 * so its rate is the rate at which the stack delivers datagrams to a
 * socket, which no echo server can beat.
 *
 *   sink -p PORT
 *
 * On SIGTERM or SIGINT it prints one JSON line: datagrams and bytes
 * received, and the monotonic times of the first and the last one (ns),
 * and exits 0.
 */
#include "server.h"

int main(int argc, char **argv)
{
	static char bufs[BENCH_BATCH][BENCH_MAX_PAYLOAD];
	struct mmsghdr msgs[BENCH_BATCH];
	struct iovec iov[BENCH_BATCH];
	uint64_t rx = 0, rx_bytes = 0, first = 0, last = 0, calls = 0;
	int fd, i;

	fd = server_socket(argc, argv, "sink", 5558);

	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BENCH_BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = BENCH_MAX_PAYLOAD;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while (!stop) {
		int n = recvmmsg(fd, msgs, BENCH_BATCH, MSG_WAITFORONE, NULL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recvmmsg");
		}
		last = now_ns();
		if (!first)
			first = last;
		calls++;
		rx += n;
		for (i = 0; i < n; i++)
			rx_bytes += msgs[i].msg_len;
	}
	printf("{\"server\":\"sink\",\"rx\":%llu,\"rx_bytes\":%llu,\"first_ns\":%llu,\"last_ns\":%llu,\"recv_calls\":%llu}\n",
	       (unsigned long long)rx, (unsigned long long)rx_bytes,
	       (unsigned long long)first, (unsigned long long)last,
	       (unsigned long long)calls);
	return 0;
}
