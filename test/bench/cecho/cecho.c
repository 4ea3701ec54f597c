// SPDX-License-Identifier: GPL-2.0
/*
 * cecho: the strongest user-space UDP echo peer of the benchmark. One
 * thread, one socket; each round takes every datagram that is waiting (up
 * to BENCH_BATCH) with one recvmmsg() and answers all of them with one
 * sendmmsg(), straight from the receive buffers to the source addresses.
 *
 *   cecho -p PORT
 *
 * On SIGTERM or SIGINT it prints one JSON line with what it handled and
 * exits 0.
 */
#include "server.h"

int main(int argc, char **argv)
{
	static char bufs[BENCH_BATCH][BENCH_MAX_PAYLOAD];
	struct sockaddr_in peers[BENCH_BATCH];
	struct mmsghdr msgs[BENCH_BATCH];
	struct iovec iov[BENCH_BATCH];
	uint64_t rx = 0, tx = 0, rx_bytes = 0, calls = 0, tx_err = 0;
	int fd, i;

	fd = server_socket(argc, argv, "cecho", 5556);

	for (i = 0; i < BENCH_BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = BENCH_MAX_PAYLOAD;
	}
	while (!stop) {
		int n, sent, off;

		for (i = 0; i < BENCH_BATCH; i++) {
			memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
			msgs[i].msg_hdr.msg_name = &peers[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		/* Block for the first datagram, then take what is there. */
		n = recvmmsg(fd, msgs, BENCH_BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recvmmsg");
		}
		calls++;
		for (i = 0; i < n; i++) {
			rx_bytes += msgs[i].msg_len;
			/* Reply with exactly the bytes received. */
			msgs[i].msg_hdr.msg_iov->iov_len = msgs[i].msg_len;
		}
		rx += n;
		for (off = 0; off < n; off += sent) {
			sent = sendmmsg(fd, msgs + off, n - off, 0);
			if (sent <= 0) {
				if (sent < 0 && errno == EINTR && !stop) {
					sent = 0;
					continue;
				}
				tx_err += n - off;
				break;
			}
			tx += sent;
		}
		for (i = 0; i < n; i++)
			msgs[i].msg_hdr.msg_iov->iov_len = BENCH_MAX_PAYLOAD;
	}
	printf("{\"server\":\"cecho\",\"rx\":%llu,\"tx\":%llu,\"rx_bytes\":%llu,\"tx_errors\":%llu,\"recv_calls\":%llu}\n",
	       (unsigned long long)rx, (unsigned long long)tx,
	       (unsigned long long)rx_bytes, (unsigned long long)tx_err,
	       (unsigned long long)calls);
	return 0;
}
