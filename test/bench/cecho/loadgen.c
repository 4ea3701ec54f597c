// SPDX-License-Identifier: GPL-2.0
/*
 * loadgen: the benchmark's load generator. Several flows (one connected
 * UDP socket, hence one source port, each), batched sendmmsg()/recvmmsg()
 * and a window of outstanding datagrams per flow; it blocks in poll() when
 * every window is full, so it does not steal CPU from the server.
 *
 *   loadgen -m window -a ADDR -p PORT -s SIZE -f FLOWS -w WINDOW -d SECONDS
 *       saturation: keep WINDOW datagrams outstanding on each flow; a flow
 *       that hears nothing for -t ms gives its window up as lost.
 *   loadgen -m rtt -a ADDR -p PORT -s SIZE -d SECONDS [-o FILE]
 *       closed-loop latency: one flow, one datagram outstanding; every
 *       round-trip time is written to FILE as little-endian uint64 ns.
 *   loadgen -m blast -a ADDR -p PORT -s SIZE -f FLOWS -d SECONDS
 *       one-way: send as fast as possible and expect nothing back (for the
 *       sink, and to show the generator's own rate).
 *
 * Every datagram carries its flow's sequence number in the first 8 bytes
 * and a fixed pattern after it; a reply of the wrong length or with a
 * wrong pattern counts as corrupt. The result is one JSON line on stdout.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_FLOWS	64

struct flow {
	int fd;
	uint64_t next_seq;
	long outstanding;
	uint64_t last_progress;
};

struct result {
	uint64_t sent, received, in_window, rx_bytes, corrupt, timeouts;
	uint64_t send_errors, recv_errors, send_calls, recv_calls, polls;
	uint64_t samples;
};

static struct flow flows[MAX_FLOWS];
static char tx_buf[BENCH_BATCH][BENCH_MAX_PAYLOAD];
static char rx_buf[BENCH_BATCH][BENCH_MAX_PAYLOAD];
static struct mmsghdr tx_msgs[BENCH_BATCH], rx_msgs[BENCH_BATCH];
static struct iovec tx_iov[BENCH_BATCH], rx_iov[BENCH_BATCH];
static size_t size = 64;

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + 3);
}

static void fill(char *p, uint64_t seq)
{
	if (size >= sizeof(seq))
		memcpy(p, &seq, sizeof(seq));
}

/* check - a reply must be the same length, and the pattern intact. */
static int check(const char *p, unsigned int len)
{
	if (len != size)
		return 0;
	if (size > 8 && (unsigned char)p[size - 1] != pattern(size - 1))
		return 0;
	if (size > 9 && (unsigned char)p[8] != pattern(8))
		return 0;
	return 1;
}

static uint64_t cpu_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000;
}

static int open_flow(const struct sockaddr_in *dst, int nonblock)
{
	int fd = socket(AF_INET, SOCK_DGRAM | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		die("socket");
	set_bufs(fd);
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)))
		die("connect");
	return fd;
}

static void setup_msgs(void)
{
	size_t i, j;

	for (i = 0; i < BENCH_BATCH; i++) {
		for (j = 0; j < size; j++)
			tx_buf[i][j] = (char)pattern(j);
		tx_iov[i].iov_base = tx_buf[i];
		tx_iov[i].iov_len = size;
		tx_msgs[i].msg_hdr.msg_iov = &tx_iov[i];
		tx_msgs[i].msg_hdr.msg_iovlen = 1;
		rx_iov[i].iov_base = rx_buf[i];
		rx_iov[i].iov_len = BENCH_MAX_PAYLOAD;
		rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
		rx_msgs[i].msg_hdr.msg_iovlen = 1;
	}
}

/* send_batch - up to n datagrams on f; returns how many left. */
static long send_batch(struct flow *f, long n, struct result *r)
{
	long i;
	int sent;

	if (n > BENCH_BATCH)
		n = BENCH_BATCH;
	for (i = 0; i < n; i++)
		fill(tx_buf[i], f->next_seq + i);
	sent = sendmmsg(f->fd, tx_msgs, n, 0);
	r->send_calls++;
	if (sent < 0) {
		if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
			r->send_errors++;
		return 0;
	}
	f->next_seq += sent;
	r->sent += sent;
	return sent;
}

/* recv_all - take every reply waiting on f. */
static long recv_all(struct flow *f, struct result *r, int in_window)
{
	long total = 0;

	for (;;) {
		int i, n = recvmmsg(f->fd, rx_msgs, BENCH_BATCH, MSG_DONTWAIT,
				    NULL);

		r->recv_calls++;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				r->recv_errors++;
			break;
		}
		for (i = 0; i < n; i++) {
			if (!check(rx_buf[i], rx_msgs[i].msg_len))
				r->corrupt++;
			r->rx_bytes += rx_msgs[i].msg_len;
		}
		r->received += n;
		if (in_window)
			r->in_window += n;
		total += n;
		if (n < BENCH_BATCH)
			break;
	}
	return total;
}

static void run_window(int nflows, long window, uint64_t end, long timeout_ms,
		       struct result *r)
{
	struct pollfd pfd[MAX_FLOWS];
	uint64_t now = now_ns();
	int i, open = 1;

	for (i = 0; i < nflows; i++) {
		pfd[i].fd = flows[i].fd;
		pfd[i].events = POLLIN;
		flows[i].last_progress = now;
	}
	/* Send phase, then a drain of up to 200 ms for late replies. */
	for (;;) {
		long inflight = 0;

		now = now_ns();
		if (open && now >= end)
			open = 0;
		if (!open && now >= end + 200000000ull)
			break;
		for (i = 0; open && i < nflows; i++) {
			struct flow *f = &flows[i];

			while (f->outstanding < window) {
				long n = send_batch(f, window - f->outstanding, r);

				if (!n)
					break;
				f->outstanding += n;
			}
		}
		for (i = 0; i < nflows; i++)
			inflight += flows[i].outstanding;
		if (!open && !inflight)
			break;
		r->polls++;
		if (poll(pfd, nflows, 5) < 0 && errno != EINTR)
			die("poll");
		now = now_ns();
		for (i = 0; i < nflows; i++) {
			struct flow *f = &flows[i];

			if (pfd[i].revents & (POLLIN | POLLERR)) {
				long n = recv_all(f, r, now < end);

				if (n) {
					f->outstanding -= n;
					if (f->outstanding < 0)
						f->outstanding = 0;
					f->last_progress = now;
				}
			}
			if (f->outstanding &&
			    now - f->last_progress > (uint64_t)timeout_ms * 1000000ull) {
				r->timeouts++;
				f->outstanding = 0;
				f->last_progress = now;
			}
		}
	}
}

static void run_blast(int nflows, uint64_t end, struct result *r)
{
	int i;

	while (now_ns() < end)
		for (i = 0; i < nflows; i++)
			send_batch(&flows[i], BENCH_BATCH, r);
}

static uint64_t *samples;
static size_t nsamples, capsamples;

static void run_rtt(uint64_t end, struct result *r)
{
	struct flow *f = &flows[0];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };

	if (setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		die("SO_RCVTIMEO");
	while (now_ns() < end) {
		uint64_t seq = f->next_seq++, t0, t1, got;
		ssize_t n;

		fill(tx_buf[0], seq);
		t0 = now_ns();
		if (send(f->fd, tx_buf[0], size, 0) != (ssize_t)size) {
			r->send_errors++;
			continue;
		}
		r->sent++;
		r->send_calls++;
		for (;;) {
			n = recv(f->fd, rx_buf[0], BENCH_MAX_PAYLOAD, 0);
			r->recv_calls++;
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					r->timeouts++;
				else
					r->recv_errors++;
				break;
			}
			got = 0;
			if (n >= 8)
				memcpy(&got, rx_buf[0], sizeof(got));
			if (size >= 8 && got != seq)
				continue;	/* a late reply to an earlier one */
			t1 = now_ns();
			r->received++;
			r->in_window++;
			r->rx_bytes += n;
			if (!check(rx_buf[0], n))
				r->corrupt++;
			if (nsamples == capsamples) {
				capsamples = capsamples ? capsamples * 2 : 65536;
				samples = realloc(samples, capsamples * sizeof(*samples));
				if (!samples)
					die("realloc");
			}
			samples[nsamples++] = t1 - t0;
			break;
		}
	}
	r->samples = nsamples;
}

static void usage(void)
{
	fprintf(stderr, "usage: loadgen -m window|rtt|blast [-a ADDR] -p PORT [-s SIZE] [-f FLOWS] [-w WINDOW] [-d SECONDS] [-t TIMEOUT_MS] [-o FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_in dst = { .sin_family = AF_INET };
	const char *mode = "window", *addr = "127.0.0.1", *out = NULL;
	long nflows = 4, window = 32, secs = 5, timeout_ms = 20, port = -1;
	struct rusage ru0, ru1;
	struct result r = { 0 };
	uint64_t t0, t1;
	int opt, i;

	while ((opt = getopt(argc, argv, "m:a:p:s:f:w:d:t:o:")) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'a': addr = optarg; break;
		case 'p': port = num_arg(optarg, "-p"); break;
		case 's': size = (size_t)num_arg(optarg, "-s"); break;
		case 'f': nflows = num_arg(optarg, "-f"); break;
		case 'w': window = num_arg(optarg, "-w"); break;
		case 'd': secs = num_arg(optarg, "-d"); break;
		case 't': timeout_ms = num_arg(optarg, "-t"); break;
		case 'o': out = optarg; break;
		default: usage();
		}
	}
	if (port < 1 || port > 65535 || size > BENCH_MAX_PAYLOAD ||
	    nflows < 1 || nflows > MAX_FLOWS || window < 1 || secs < 1)
		usage();
	if (strcmp(mode, "rtt") == 0)
		nflows = 1;
	if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) {
		fprintf(stderr, "-a: not an IPv4 address: %s\n", addr);
		return 2;
	}
	dst.sin_port = htons((uint16_t)port);
	setup_msgs();
	for (i = 0; i < nflows; i++)
		flows[i].fd = open_flow(&dst, strcmp(mode, "rtt") != 0);

	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_ns();
	if (strcmp(mode, "window") == 0)
		run_window(nflows, window, t0 + secs * 1000000000ull, timeout_ms, &r);
	else if (strcmp(mode, "blast") == 0)
		run_blast(nflows, t0 + secs * 1000000000ull, &r);
	else if (strcmp(mode, "rtt") == 0)
		run_rtt(t0 + secs * 1000000000ull, &r);
	else
		usage();
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);

	if (out && nsamples) {
		FILE *fp = fopen(out, "wb");

		if (!fp || fwrite(samples, sizeof(*samples), nsamples, fp) != nsamples ||
		    fclose(fp))
			die(out);
	}
	printf("{\"mode\":\"%s\",\"size\":%zu,\"flows\":%ld,\"window\":%ld,"
	       "\"duration_ns\":%llu,\"window_ns\":%llu,\"sent\":%llu,\"received\":%llu,"
	       "\"received_in_window\":%llu,\"rx_bytes\":%llu,\"corrupt\":%llu,"
	       "\"timeouts\":%llu,\"send_errors\":%llu,\"recv_errors\":%llu,"
	       "\"send_calls\":%llu,\"recv_calls\":%llu,\"polls\":%llu,\"samples\":%llu,"
	       "\"cpu_user_ns\":%llu,\"cpu_sys_ns\":%llu}\n",
	       mode, size, nflows, window,
	       (unsigned long long)(t1 - t0), (unsigned long long)secs * 1000000000ull,
	       (unsigned long long)r.sent, (unsigned long long)r.received,
	       (unsigned long long)r.in_window, (unsigned long long)r.rx_bytes,
	       (unsigned long long)r.corrupt, (unsigned long long)r.timeouts,
	       (unsigned long long)r.send_errors, (unsigned long long)r.recv_errors,
	       (unsigned long long)r.send_calls, (unsigned long long)r.recv_calls,
	       (unsigned long long)r.polls, (unsigned long long)r.samples,
	       (unsigned long long)(cpu_ns(&ru1.ru_utime) - cpu_ns(&ru0.ru_utime)),
	       (unsigned long long)(cpu_ns(&ru1.ru_stime) - cpu_ns(&ru0.ru_stime)));
	return 0;
}
