// SPDX-License-Identifier: GPL-2.0
/*
 * Sanity probe: must always compile. If it does not, the probe flags are
 * wrong for this kernel, and every other probe result would be a lie, so
 * the build stops here with the compiler's message.
 */
#include <linux/module.h>
#include <net/sock.h>
#include <net/udp.h>

static inline int kecho_probe(struct sock *sk)
{
	return sk->sk_family;
}
