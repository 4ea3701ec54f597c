// SPDX-License-Identifier: GPL-2.0
/*
 * kecho: which datagrams must not be answered, and the max_pps cap.
 */
#include "kecho.h"

#include <linux/if_packet.h>
#include <linux/jiffies.h>
#include <linux/netdevice.h>
#include <net/addrconf.h>
#include <net/ipv6.h>
#include <net/l3mdev.h>
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
	/*
	 * A subnet-directed broadcast, e.g. 192.0.2.255 on 192.0.2.0/24, as
	 * the destination, or as a (forged) source: the input path only
	 * rejects that with rp_filter on, and the echo would be a directed
	 * broadcast (which the stack refuses without SO_BROADCAST, so it
	 * would only show up as a tx error).
	 */
	return inet_addr_type(sock_net(sk), daddr) == RTN_BROADCAST ||
	       inet_addr_type(sock_net(sk), saddr) == RTN_BROADCAST;
}

/*
 * A source address no real sender can have, whose echo the stack would
 * turn back into this host: IPv6 sends to "::" go to ::1 (udpv6_sendmsg),
 * IPv4 sends to 0.0.0.0/8 to a local address (ip_route_output). A forged
 * datagram from [::]:P would otherwise reach a service bound to [::1]:P,
 * from outside, through the loopback interface (and past a firewall that
 * trusts lo). A v4-mapped source inside a native IPv6 packet is just as
 * bogus: its echo would leave as IPv4, to an address the sender never
 * used. The IPv6 input path accepts all three, IPv4 only 0.0.0.0 to the
 * limited broadcast (dropped anyway) or from a local raw socket.
 */
static bool kecho_is_bogus_source(const struct kecho_peer *peer)
{
	if (peer->is_v4)
		return ipv4_is_zeronet(peer->saddr4);
	return ipv6_addr_any(&peer->saddr6) ||
	       ipv6_addr_v4mapped(&peer->saddr6);
}

/*
 * An IPv6 datagram from one of this host's own addresses that came in
 * over a real interface is forged: the host's own traffic to itself
 * arrives through the loopback device (or its VRF device). IPv4 input
 * rejects such a source (fib_validate_source, unless accept_local is set);
 * IPv6 input does not. Its echo would go to that local address through lo,
 * to a service on the same port there, past a firewall that trusts lo.
 */
static bool kecho_is_spoofed_self6(const struct sock *sk,
				   const struct sk_buff *skb,
				   const struct in6_addr *saddr)
{
#if IS_ENABLED(CONFIG_IPV6)
	struct net *net = sock_net(sk);
	struct net_device *dev;
	bool spoofed;

	if (!ipv6_chk_addr(net, saddr, NULL, 0))
		return false;
	rcu_read_lock();
	dev = dev_get_by_index_rcu(net, skb->skb_iif);
	spoofed = dev && !(dev->flags & IFF_LOOPBACK) &&
		  !netif_is_l3_master(dev);
	rcu_read_unlock();
	return spoofed;
#else
	return false;
#endif
}

/*
 * kecho_filter - decide whether a datagram may be answered. The loop guard
 * is checked first, so a broadcast from port 7 counts as drop_loop. A
 * bogus or spoofed source address (see above) counts as drop_loop too:
 * its echo would come back to this host.
 */
enum kecho_verdict kecho_filter(const struct kecho_server *srv,
				const struct sk_buff *skb,
				const struct kecho_peer *peer)
{
	if (kecho_is_loop_port(srv, ntohs(peer->sport)) ||
	    kecho_is_bogus_source(peer) ||
	    (!peer->is_v4 &&
	     kecho_is_spoofed_self6(srv->sock->sk, skb, &peer->saddr6)))
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
