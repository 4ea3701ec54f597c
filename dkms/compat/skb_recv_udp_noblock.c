// SPDX-License-Identifier: GPL-2.0
/* HAVE_SKB_RECV_UDP_NOBLOCK: skb_recv_udp(sk, flags, noblock, err), < 5.19. */
#include <net/udp.h>

static inline struct sk_buff *kecho_probe(struct sock *sk, int *err)
{
	return skb_recv_udp(sk, 0, 1, err);
}
