// SPDX-License-Identifier: GPL-2.0
/*
 * kecho: one log line per datagram, when log_packets is set, rate-limited:
 *
 *   kecho: 127.0.0.1:40000 len 11 "hello world"
 *   kecho: [::1]:40000 len 70000 "abc\x00..."...
 *   kecho: 192.0.2.7:7 len 5 "hello" dropped: loop
 *
 * The payload prefix is at most KECHO_LOG_PREFIX bytes: printable ASCII as
 * is, '"' and '\' backslash-escaped, every other byte as \xHH; "..." after
 * the closing quote means the payload was longer. IPv4 senders on a "::"
 * socket are shown as IPv4.
 */
#include "kecho.h"

#include <linux/ratelimit.h>

#define KECHO_LOG_INTERVAL	HZ	/* at most KECHO_LOG_BURST lines */
#define KECHO_LOG_BURST		10	/* per KECHO_LOG_INTERVAL */

static DEFINE_RATELIMIT_STATE(kecho_log_rs, KECHO_LOG_INTERVAL,
			      KECHO_LOG_BURST);

static const char * const kecho_verdict_str[] = {
	[KECHO_PASS] = "",
	[KECHO_DROP_LOOP] = " dropped: loop",
	[KECHO_DROP_BCAST] = " dropped: broadcast",
	[KECHO_DROP_RATELIMIT] = " dropped: max_pps",
};

static void kecho_escape(char *out, const u8 *data, unsigned int len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned int i;

	for (i = 0; i < len; i++) {
		u8 c = data[i];

		if (c == '"' || c == '\\') {
			*out++ = '\\';
			*out++ = c;
		} else if (c >= 0x20 && c < 0x7f) {
			*out++ = c;
		} else {
			*out++ = '\\';
			*out++ = 'x';
			*out++ = hex[c >> 4];
			*out++ = hex[c & 0xf];
		}
	}
	*out = '\0';
}

void kecho_log_packet(const struct kecho_peer *peer, const u8 *data,
		      unsigned int len, enum kecho_verdict verdict)
{
	char esc[KECHO_LOG_PREFIX * 4 + 1];
	unsigned int n = min_t(unsigned int, len, KECHO_LOG_PREFIX);
	const char *more = len > n ? "..." : "";

	if (!READ_ONCE(kecho_log_packets) || !__ratelimit(&kecho_log_rs))
		return;

	kecho_escape(esc, data, n);
	if (peer->is_v4)
		pr_info("%pI4:%u len %u \"%s\"%s%s\n", &peer->saddr4,
			ntohs(peer->sport), len, esc, more,
			kecho_verdict_str[verdict]);
	else
		pr_info("[%pI6c]:%u len %u \"%s\"%s%s\n", &peer->saddr6,
			ntohs(peer->sport), len, esc, more,
			kecho_verdict_str[verdict]);
}
