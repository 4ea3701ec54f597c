/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences between 5.10 and 7.x, decided by compile tests
 * against the headers being built for (the files in compat/, run by Kbuild into
 * compat_gen.h), never by version numbers: distribution kernels backport.
 */
#ifndef _KECHO_COMPAT_H
#define _KECHO_COMPAT_H

#include <linux/net.h>
#include <linux/workqueue.h>
#include <net/udp.h>

#include "compat_gen.h"

/*
 * skb_recv_udp() lost its separate "noblock" argument in 5.19; since then
 * MSG_DONTWAIT in flags says the same.
 */
static inline struct sk_buff *kecho_skb_recv_udp(struct sock *sk, int *err)
{
#ifdef HAVE_SKB_RECV_UDP_NOBLOCK
	return skb_recv_udp(sk, MSG_DONTWAIT, 1, err);
#else
	return skb_recv_udp(sk, MSG_DONTWAIT, err);
#endif
}

/*
 * kernel_bind() takes a struct sockaddr_unsized * since 6.19 (the address
 * length travels beside it), a struct sockaddr * before.
 */
static inline int kecho_kernel_bind(struct socket *sock,
				    struct sockaddr_storage *addr, int addrlen)
{
#ifdef HAVE_KERNEL_BIND_UNSIZED
	return kernel_bind(sock, (struct sockaddr_unsized *)addr, addrlen);
#else
	return kernel_bind(sock, (struct sockaddr *)addr, addrlen);
#endif
}

/*
 * Flags for a per-CPU workqueue. Kernels that have WQ_PERCPU (6.17 on,
 * and stable kernels it was backported to, such as Debian's 6.12.118)
 * are moving alloc_workqueue()'s default to unbound: 7.3 already logs
 * a warning for a workqueue created with neither WQ_PERCPU nor
 * WQ_UNBOUND. Before the flag existed, per-CPU was what no flag meant.
 */
#ifdef HAVE_WQ_PERCPU
#define KECHO_WQ_PERCPU		WQ_PERCPU
#else
#define KECHO_WQ_PERCPU		0
#endif

#endif /* _KECHO_COMPAT_H */
