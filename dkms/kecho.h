/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kecho: UDP echo served from inside the kernel.
 *
 * Shared declarations. Every .c file includes this header first, so that
 * pr_fmt is defined exactly once, before <linux/printk.h> is seen.
 */
#ifndef _KECHO_H
#define _KECHO_H

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/skbuff.h>
#include <linux/socket.h>
#include <linux/udp.h>
#include <linux/workqueue.h>
#include <net/sock.h>

#include "compat.h"

#define KECHO_DEFAULT_PORT	5555
#define KECHO_DEFAULT_BIND	"0.0.0.0"
#define KECHO_DEFAULT_LOG	true
#define KECHO_DEFAULT_LOG_STR	"Y"
#define KECHO_DEFAULT_MAX_PPS	0

/* Longest IPv6 literal, e.g. "ffff:ffff:...:255.255.255.255", plus NUL. */
#define KECHO_ADDR_MAX		48

/*
 * Largest UDP payload kecho can be handed: a 16-bit UDP length minus the
 * 8-byte header. IPv4 delivers at most 65507 bytes, IPv6 at most 65527;
 * anything longer could only be an IPv6 jumbogram, which UDP sockets
 * never see here. The receive buffer is sized for this, so nothing is
 * ever truncated.
 */
#define KECHO_MAX_PAYLOAD	(U16_MAX - sizeof(struct udphdr))

/* Payload bytes a log line shows (log.c), escaped. */
#define KECHO_LOG_PREFIX	64

/* Socket buffer sizes, as for SO_RCVBUF/SO_SNDBUF (the kernel doubles them). */
#define KECHO_SOCK_BUF		(2 << 20)

/* Datagrams handled per work run before the work requeues itself. */
#define KECHO_BUDGET		64

/* Bits in kecho_server.flags. */
enum {
	KECHO_WORK_PENDING,
	KECHO_STOPPING,		/* unloading: the work must not requeue itself */
};

struct kecho_server {
	struct socket *sock;
	struct workqueue_struct *wq;
	struct work_struct work;
	unsigned long flags;
	void (*saved_data_ready)(struct sock *sk);
	u8 *buf;		/* KECHO_MAX_PAYLOAD bytes, used by the work only */
	u16 port;		/* host order */
	bool wildcard;		/* bound to 0.0.0.0 or :: */
	/* max_pps window, touched by the work only. */
	unsigned long rate_window;
	unsigned int rate_count;
};

/* Where a datagram came from and where it was sent to. */
struct kecho_peer {
	union {
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} addr;			/* reply destination, in the socket's family */
	int addrlen;
	bool is_v4;		/* the datagram is IPv4 (possibly v4-mapped) */
	__be32 saddr4, daddr4;
	struct in6_addr saddr6, daddr6;
	__be16 sport;
	int ifindex;		/* for link-local IPv6 replies, else 0 */
};

enum kecho_verdict {
	KECHO_PASS,
	KECHO_DROP_LOOP,
	KECHO_DROP_BCAST,
	KECHO_DROP_RATELIMIT,
};

/* main.c: parameters readable at run time. */
extern bool kecho_log_packets;
extern unsigned int kecho_max_pps;

/* socket.c */
int kecho_addr_parse(const char *str, u16 port, struct sockaddr_storage *ss,
		     int *len);
int kecho_socket_open(struct kecho_server *srv,
		      const struct sockaddr_storage *addr, int addrlen);
void kecho_socket_start(struct kecho_server *srv);
void kecho_socket_stop(struct kecho_server *srv);
void kecho_socket_close(struct kecho_server *srv);

/* echo.c */
void kecho_work(struct work_struct *work);

/* filter.c */
enum kecho_verdict kecho_filter(const struct kecho_server *srv,
				const struct sk_buff *skb,
				const struct kecho_peer *peer);
bool kecho_rate_allow(struct kecho_server *srv);

/* log.c */
void kecho_log_packet(const struct kecho_peer *peer, const u8 *data,
		      unsigned int len, enum kecho_verdict verdict);

/* stats.c */
enum kecho_counter {
	KECHO_RX_PACKETS,
	KECHO_RX_BYTES,
	KECHO_TX_PACKETS,
	KECHO_TX_BYTES,
	KECHO_DROP_LOOP_CNT,
	KECHO_DROP_BCAST_CNT,
	KECHO_DROP_RATELIMIT_CNT,
	KECHO_DROP_CSUM_CNT,
	KECHO_TX_ERRORS,
	KECHO_RX_ERRORS,
	KECHO_NR_COUNTERS,
};

void kecho_stat_add(enum kecho_counter c, u64 n);
int kecho_stats_init(void);
void kecho_stats_exit(void);

static inline void kecho_stat_inc(enum kecho_counter c)
{
	kecho_stat_add(c, 1);
}

#endif /* _KECHO_H */
