// SPDX-License-Identifier: GPL-2.0
/*
 * kecho: the kernel UDP socket, its address and its data-ready callback.
 */
#include "kecho.h"

#include <linux/inet.h>
#include <linux/string.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>

/*
 * kecho_addr_parse - turn an address literal and a port into a sockaddr.
 * Accepts a complete IPv4 dotted quad or an IPv6 literal (which may end
 * in a dotted quad); nothing else, and no trailing characters.
 */
int kecho_addr_parse(const char *str, u16 port, struct sockaddr_storage *ss,
		     int *len)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	int n = strlen(str);
	const char *end;

	memset(ss, 0, sizeof(*ss));
	if (n == 0)
		return -EINVAL;

	if (in4_pton(str, n, (u8 *)&sin->sin_addr.s_addr, -1, &end) &&
	    end == str + n) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}

	memset(ss, 0, sizeof(*ss));
	if (in6_pton(str, n, sin6->sin6_addr.s6_addr, -1, &end) &&
	    end == str + n) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

static bool kecho_addr_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	return ipv6_addr_any(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/*
 * Runs in softirq context with the socket's receive path in an RCU read
 * section: it must not sleep and must not send. It only schedules the
 * drain, once while one is pending.
 */
static void kecho_data_ready(struct sock *sk)
{
	struct kecho_server *srv;

	read_lock_bh(&sk->sk_callback_lock);
	srv = sk->sk_user_data;
	/*
	 * The datagram is on the receive queue; order that before reading
	 * the pending bit, against kecho_work() clearing it before it looks
	 * at the queue. test_and_set_bit() is fully ordered even when it
	 * finds the bit set only since 6.0 (and its stable backports); the
	 * explicit barrier keeps a datagram from being stranded on weakly
	 * ordered CPUs whatever the kernel (on x86 it costs nothing).
	 */
	smp_mb__before_atomic();
	if (likely(srv) && !test_and_set_bit(KECHO_WORK_PENDING, &srv->flags))
		queue_work(srv->wq, &srv->work);
	read_unlock_bh(&sk->sk_callback_lock);
}

/*
 * kecho_socket_open - create the kernel UDP socket and bind it. The socket
 * is not served until kecho_socket_start(); datagrams that arrive before
 * wait in its receive queue.
 */
int kecho_socket_open(struct kecho_server *srv,
		      const struct sockaddr_storage *addr, int addrlen)
{
	struct sockaddr_storage a = *addr;
	struct socket *sock;
	int err;

	err = sock_create_kern(&init_net, addr->ss_family, SOCK_DGRAM,
			       IPPROTO_UDP, &sock);
	if (err) {
		pr_err("cannot create UDP socket: %d\n", err);
		return err;
	}

	/*
	 * Room for a burst: the work drains in process context and may lag
	 * behind the softirq; whatever does not fit is dropped by UDP itself
	 * (the socket's drop counter, not kecho's). Echoes leave through the
	 * same socket, so give sends the same room.
	 */
	sock_set_rcvbuf(sock->sk, KECHO_SOCK_BUF);
	lock_sock(sock->sk);
	sock->sk->sk_userlocks |= SOCK_SNDBUF_LOCK;
	WRITE_ONCE(sock->sk->sk_sndbuf, KECHO_SOCK_BUF * 2);
	release_sock(sock->sk);

	if (addr->ss_family == AF_INET6) {
		/*
		 * "::" serves IPv4 too (as v4-mapped addresses), whatever
		 * net.ipv6.bindv6only says.
		 */
		lock_sock(sock->sk);
		sock->sk->sk_ipv6only = 0;
		release_sock(sock->sk);
	}

	/* No SO_REUSEADDR/SO_REUSEPORT: a port in use must fail the load. */
	err = kecho_kernel_bind(sock, &a, addrlen);
	if (err) {
		if (err == -EADDRINUSE)
			pr_err("port %u: already in use\n", srv->port);
		else
			pr_err("cannot bind to port %u: %d\n", srv->port, err);
		sock_release(sock);
		return err;
	}

	srv->sock = sock;
	srv->wildcard = kecho_addr_is_wildcard(addr);
	return 0;
}

/* kecho_socket_start - take over the data-ready callback and serve. */
void kecho_socket_start(struct kecho_server *srv)
{
	struct sock *sk = srv->sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	srv->saved_data_ready = sk->sk_data_ready;
	sk->sk_user_data = srv;
	sk->sk_data_ready = kecho_data_ready;
	write_unlock_bh(&sk->sk_callback_lock);

	/* Serve whatever arrived between bind and now. */
	if (!test_and_set_bit(KECHO_WORK_PENDING, &srv->flags))
		queue_work(srv->wq, &srv->work);
}

/*
 * kecho_socket_stop - give the callback back. Once the write lock is
 * dropped, no kecho_data_ready() can queue work any more: one that already
 * runs holds the read lock, one that starts later finds sk_user_data NULL.
 */
void kecho_socket_stop(struct kecho_server *srv)
{
	struct sock *sk = srv->sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_data_ready = srv->saved_data_ready;
	sk->sk_user_data = NULL;
	write_unlock_bh(&sk->sk_callback_lock);
}

void kecho_socket_close(struct kecho_server *srv)
{
	sock_release(srv->sock);
	srv->sock = NULL;
}
