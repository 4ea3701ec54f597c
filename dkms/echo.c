// SPDX-License-Identifier: GPL-2.0
/*
 * kecho: the drain work. Receives every pending datagram, checks it, logs
 * it and sends the same bytes back to the sender from the same socket.
 * Runs in process context only.
 *
 * Counters (stats.c), for every datagram taken off the socket:
 *   rx_packets/rx_bytes  counted first, for every datagram, whatever
 *                        happens to it next (bytes = UDP payload bytes);
 *   then exactly one of:
 *   drop_csum            bad UDP checksum (not logged);
 *   drop_loop            source port 0, kecho's own port, or 7, 9, 13,
 *                        17, 19, 37; or a source address whose echo
 *                        would come back to this host (::, v4-mapped
 *                        in IPv6, 0.0.0.0/8, or one of the host's own
 *                        IPv6 addresses from outside; see filter.c);
 *   drop_bcast           arrived as link-layer broadcast/multicast, or to
 *                        (or from) a broadcast or multicast address;
 *   drop_ratelimit       over max_pps in the current one-second window;
 *   tx_packets/tx_bytes  echo handed to the stack in full;
 *   tx_errors            sending the echo failed (e.g. -EAGAIN, no route).
 *   So rx_packets == drop_csum + drop_loop + drop_bcast + drop_ratelimit +
 *   tx_packets + tx_errors once the socket is drained, and tx_bytes counts
 *   the same payload bytes as the rx_bytes of the datagrams echoed.
 *   rx_errors counts errors the receive call reported (no datagram, so
 *   not in rx_packets), and, defensively, a datagram longer than the
 *   buffer or that could not be copied, which UDP's 16-bit length rules
 *   out; such a datagram would be in rx_packets and nowhere else.
 */
#include "kecho.h"

#include <linux/if_packet.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/sched.h>
#include <net/ip.h>
#include <net/ipv6.h>

static void kecho_peer_from_skb(const struct kecho_server *srv,
				const struct sk_buff *skb,
				struct kecho_peer *peer)
{
	memset(peer, 0, sizeof(*peer));
	peer->sport = udp_hdr(skb)->source;
	peer->is_v4 = skb->protocol == htons(ETH_P_IP);

	if (peer->is_v4) {
		peer->saddr4 = ip_hdr(skb)->saddr;
		peer->daddr4 = ip_hdr(skb)->daddr;
	} else {
		peer->saddr6 = ipv6_hdr(skb)->saddr;
		peer->daddr6 = ipv6_hdr(skb)->daddr;
	}

	if (srv->sock->sk->sk_family == AF_INET) {
		struct sockaddr_in *sin = &peer->addr.v4;

		sin->sin_family = AF_INET;
		sin->sin_port = peer->sport;
		sin->sin_addr.s_addr = peer->saddr4;
		peer->addrlen = sizeof(*sin);
		return;
	}

	peer->addr.v6.sin6_family = AF_INET6;
	peer->addr.v6.sin6_port = peer->sport;
	peer->addrlen = sizeof(peer->addr.v6);
	if (peer->is_v4) {
		ipv6_addr_set_v4mapped(peer->saddr4, &peer->addr.v6.sin6_addr);
	} else {
		peer->addr.v6.sin6_addr = peer->saddr6;
		peer->addr.v6.sin6_scope_id =
			ipv6_iface_scope_id(&peer->saddr6, inet6_iif(skb));
		if (peer->addr.v6.sin6_scope_id)
			peer->ifindex = inet6_iif(skb);
	}
}

/*
 * For a wildcard bind, answer from the address the datagram was sent to
 * (IP_PKTINFO / IPV6_PKTINFO), as a multi-homed host must; otherwise the
 * reply's source would be whatever the route suggests.
 */
union kecho_cmsg {
	struct cmsghdr hdr;
	u8 buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
};

static void kecho_set_pktinfo(const struct kecho_server *srv,
			      const struct kecho_peer *peer,
			      union kecho_cmsg *ctl, struct msghdr *msg)
{
	struct cmsghdr *cm = &ctl->hdr;

	memset(ctl, 0, sizeof(*ctl));
	if (srv->sock->sk->sk_family == AF_INET) {
		struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(cm);

		cm->cmsg_level = SOL_IP;
		cm->cmsg_type = IP_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(*pi));
		pi->ipi_spec_dst.s_addr = peer->daddr4;
		msg->msg_controllen = CMSG_SPACE(sizeof(*pi));
	} else {
		struct in6_pktinfo *pi = (struct in6_pktinfo *)CMSG_DATA(cm);

		cm->cmsg_level = SOL_IPV6;
		cm->cmsg_type = IPV6_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(*pi));
		if (peer->is_v4)
			ipv6_addr_set_v4mapped(peer->daddr4, &pi->ipi6_addr);
		else
			pi->ipi6_addr = peer->daddr6;
		pi->ipi6_ifindex = peer->ifindex;
		msg->msg_controllen = CMSG_SPACE(sizeof(*pi));
	}
	msg->msg_control = ctl;
}

static void kecho_send(struct kecho_server *srv, const struct kecho_peer *peer,
		       unsigned int len)
{
	struct kvec iov = { .iov_base = srv->buf, .iov_len = len };
	struct msghdr msg = {
		.msg_name = (void *)&peer->addr,
		.msg_namelen = peer->addrlen,
		.msg_flags = MSG_DONTWAIT,
	};
	union kecho_cmsg ctl;
	int ret;

	if (srv->wildcard)
		kecho_set_pktinfo(srv, peer, &ctl, &msg);

	ret = kernel_sendmsg(srv->sock, &msg, &iov, 1, len);
	if (ret == len) {
		kecho_stat_inc(KECHO_TX_PACKETS);
		kecho_stat_add(KECHO_TX_BYTES, len);
	} else {
		kecho_stat_inc(KECHO_TX_ERRORS);
	}
}

static const enum kecho_counter kecho_drop_counter[] = {
	[KECHO_DROP_LOOP] = KECHO_DROP_LOOP_CNT,
	[KECHO_DROP_BCAST] = KECHO_DROP_BCAST_CNT,
	[KECHO_DROP_RATELIMIT] = KECHO_DROP_RATELIMIT_CNT,
};

/*
 * kecho_handle - one datagram; the skb's UDP header is already pulled.
 * Returns false for a datagram that is broken rather than merely not
 * answered, so that the caller frees it as a drop.
 */
static bool kecho_handle(struct kecho_server *srv, struct sk_buff *skb)
{
	unsigned int len = skb->len;
	enum kecho_verdict verdict;
	struct kecho_peer peer;
	unsigned int copy;

	kecho_stat_inc(KECHO_RX_PACKETS);
	kecho_stat_add(KECHO_RX_BYTES, len);

	/*
	 * The receive path leaves verification to recvmsg() unless the
	 * device vouched for the checksum; do what udp_recvmsg() does.
	 */
	if (!skb_csum_unnecessary(skb) && __skb_checksum_complete(skb)) {
		kecho_stat_inc(KECHO_DROP_CSUM_CNT);
		return false;
	}
	if (unlikely(len > KECHO_MAX_PAYLOAD)) {
		kecho_stat_inc(KECHO_RX_ERRORS);
		return false;
	}

	kecho_peer_from_skb(srv, skb, &peer);
	verdict = kecho_filter(srv, skb, &peer);
	if (verdict == KECHO_PASS && !kecho_rate_allow(srv))
		verdict = KECHO_DROP_RATELIMIT;

	/*
	 * Copy what is used: the whole payload for an echo, only the logged
	 * prefix for a drop, so that a flood kecho drops (max_pps, loop,
	 * broadcast) costs no 64 KB copy per datagram.
	 */
	copy = verdict == KECHO_PASS ? len :
	       min_t(unsigned int, len, KECHO_LOG_PREFIX);
	if (unlikely(skb_copy_bits(skb, 0, srv->buf, copy))) {
		kecho_stat_inc(KECHO_RX_ERRORS);
		return false;
	}

	/* Log before sending: once the echo is back, the line is there. */
	kecho_log_packet(&peer, srv->buf, len, verdict);

	if (verdict != KECHO_PASS) {
		kecho_stat_inc(kecho_drop_counter[verdict]);
		return true;
	}
	kecho_send(srv, &peer, len);
	return true;
}

/*
 * kecho_work - drain the socket. The pending bit is cleared before the
 * first receive, with a full barrier, so a datagram queued after the last
 * receive below finds the bit clear and queues the work again: nothing
 * is left waiting for the next datagram. After KECHO_BUDGET datagrams the
 * work yields and requeues itself, so a flood cannot monopolise a worker.
 */
void kecho_work(struct work_struct *work)
{
	struct kecho_server *srv = container_of(work, struct kecho_server,
						work);
	struct sock *sk = srv->sock->sk;
	unsigned int budget = KECHO_BUDGET;
	struct sk_buff *skb;
	int err;

	clear_bit(KECHO_WORK_PENDING, &srv->flags);
	/*
	 * Make the clear visible before the first receive looks at the
	 * queue. Pairs with the fully ordered test_and_set_bit() that
	 * kecho_data_ready() runs after UDP enqueued the datagram.
	 */
	smp_mb__after_atomic();

	while (budget--) {
		skb = kecho_skb_recv_udp(sk, &err);
		if (!skb) {
			if (err == -EAGAIN)
				return;
			kecho_stat_inc(KECHO_RX_ERRORS);
			continue;
		}
		/*
		 * UDP released the receive memory when the skb was dequeued
		 * and set no destructor, so the generic free is all there is
		 * to do (skb_consume_udp() is not exported to modules on
		 * kernels built with CONFIG_IPV6=y since 6.15).
		 */
		if (kecho_handle(srv, skb))
			consume_skb(skb);
		else
			kfree_skb(skb);
		cond_resched();
	}

	if (test_bit(KECHO_STOPPING, &srv->flags))
		return;
	if (!test_and_set_bit(KECHO_WORK_PENDING, &srv->flags))
		queue_work(srv->wq, &srv->work);
}
