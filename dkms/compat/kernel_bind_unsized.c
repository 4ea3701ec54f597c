// SPDX-License-Identifier: GPL-2.0
/* HAVE_KERNEL_BIND_UNSIZED: kernel_bind() takes struct sockaddr_unsized *. */
#include <linux/net.h>
#include <linux/socket.h>

static inline int kecho_probe(struct socket *sock,
			      struct sockaddr_unsized *addr, int len)
{
	return kernel_bind(sock, addr, len);
}
