// SPDX-License-Identifier: GPL-2.0
/*
 * kecho: which datagrams must not be answered, and the max_pps cap.
 */
#include "kecho.h"

#include <linux/if_packet.h>
#include <linux/jiffies.h>
#include <net/ipv6.h>
#include <net/route.h>

/*
 * Classic small services that answer unsolicited datagrams: echo (7),
 * discard (9), daytime (13), qotd (17), chargen (19), time (37). Echoing
 * to one of them, or to another kecho on the same port, could ping-pong.
 */
static bool kecho_is_loop_port(const struct kecho_server *srv, u16 sport)
{
	switch (sport) {
	case 0:
	case 7:
	case 9:
	case 13:
	case 17:
	case 19:
	case 37:
		return true;
	default:
		return sport == srv->port;
	}
}

static bool kecho_is_bcast4(const struct sock *sk, __be32 daddr, __be32 saddr)
{
	if (ipv4_is_multicast(daddr) || ipv4_is_lbcast(daddr) ||
	    ipv4_is_multicast(saddr) || ipv4_is_lbcast(saddr))
		return true;
	/* A subnet-directed broadcast, e.g. 192.0.2.255 on 192.0.2.0/24. */
	return inet_addr_type(sock_net(sk), daddr) == RTN_BROADCAST;
}

/*
 * kecho_filter - decide whether a datagram may be answered. The loop guard
 * is checked first, so a broadcast from port 7 counts as drop_loop.
 */
enum kecho_verdict kecho_filter(const struct kecho_server *srv,
				const struct sk_buff *skb,
				const struct kecho_peer *peer)
{
	if (kecho_is_loop_port(srv, ntohs(peer->sport)))
		return KECHO_DROP_LOOP;

	if (skb->pkt_type == PACKET_BROADCAST ||
	    skb->pkt_type == PACKET_MULTICAST)
		return KECHO_DROP_BCAST;

	if (peer->is_v4) {
		if (kecho_is_bcast4(srv->sock->sk, peer->daddr4, peer->saddr4))
			return KECHO_DROP_BCAST;
	} else if (ipv6_addr_is_multicast(&peer->daddr6) ||
		   ipv6_addr_is_multicast(&peer->saddr6)) {
		return KECHO_DROP_BCAST;
	}
	return KECHO_PASS;
}

/*
 * kecho_rate_allow - max_pps as a fixed one-second window: up to max_pps
 * echoes per window, the rest dropped. max_pps is re-read every time, so
 * a change through sysfs applies at once; 0 means no cap. Called from the
 * work only, which never runs twice at once, so no locking.
 */
bool kecho_rate_allow(struct kecho_server *srv)
{
	unsigned int max = READ_ONCE(kecho_max_pps);
	unsigned long now = jiffies;

	if (!max)
		return true;
	if (time_after_eq(now, srv->rate_window + HZ) ||
	    time_before(now, srv->rate_window)) {
		srv->rate_window = now;
		srv->rate_count = 0;
	}
	if (srv->rate_count >= max)
		return false;
	srv->rate_count++;
	return true;
}
