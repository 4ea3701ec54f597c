package driver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kecho-dev/kecho/test/vm"
)

// Edit replaces Old, which must occur exactly once in File, with New.
type Edit struct {
	File, Old, New string
}

// Variant is a build of kecho from a patched copy of dkms/ (or the
// baseline build with other parameters).
type Variant struct {
	Name   string
	Desc   string
	Edits  []Edit
	Params string // module parameters for insmod
}

// Variants are the design choices measured by `-variants`. Each one
// changes one thing against the baseline (dkms/ as committed).
var Variants = []Variant{
	{Name: "baseline", Desc: "dkms/ as committed (per-CPU workqueue, budget 64, copy to buffer, log_packets=Y)"},
	{Name: "log-off", Desc: "log_packets=0 (parameter, same build)", Params: "log_packets=0"},
	{Name: "wq-unbound", Desc: "WQ_UNBOUND workqueue: the scheduler places the work on any CPU (the first design)",
		Edits: unboundEdits},
	{Name: "wq-highpri", Desc: "per-CPU WQ_HIGHPRI (nice -20 workers)",
		Edits: []Edit{{"main.c", wqAnchor, `alloc_workqueue("kecho", KECHO_WQ_PERCPU | WQ_HIGHPRI, 1)`}}},
	{Name: "wq-unbound-highpri", Desc: "WQ_UNBOUND | WQ_HIGHPRI",
		Edits: []Edit{{"main.c", wqAnchor, `alloc_workqueue("kecho", WQ_UNBOUND | WQ_HIGHPRI, 1)`}}},
	{Name: "budget-16", Desc: "drain budget 16 datagrams per work run",
		Edits: []Edit{{"kecho.h", "#define KECHO_BUDGET\t\t64", "#define KECHO_BUDGET\t\t16"}}},
	{Name: "budget-1024", Desc: "drain budget 1024 datagrams per work run",
		Edits: budget1024Edits},
	{Name: "no-resched", Desc: "no cond_resched() per datagram (only the requeue per budget)",
		Edits: noReschedEdits},
	{Name: "echo-from-skb", Desc: "send from the received skb's linear data, no copy into kecho's buffer", Edits: echoFromSkb},
	{Name: "no-pktinfo", Desc: "no IP_PKTINFO source address on replies (upper bound of its cost; wrong for multi-homed hosts)",
		Edits: []Edit{{"echo.c", "\tif (srv->wildcard)\n\t\tkecho_set_pktinfo(srv, peer, &ctl, &msg);", "\tif (srv->wildcard && 0)\n\t\tkecho_set_pktinfo(srv, peer, &ctl, &msg);"}}},
	{Name: "combo-percpu", Desc: "echo-from-skb + budget-1024 + no-resched, per-CPU workqueue kept", Edits: combo(false)},
	{Name: "combo-unbound", Desc: "echo-from-skb + budget-1024 + no-resched on a WQ_UNBOUND workqueue", Edits: combo(true)},
	{Name: "no-bcast-lookup", Desc: "no inet_addr_type() FIB lookups per IPv4 datagram (upper bound of their cost)",
		Edits: []Edit{{"filter.c", "ipv4_is_lbcast(saddr))\n\t\treturn true;\n", "ipv4_is_lbcast(saddr))\n\t\treturn true;\n\tif (1)\n\t\treturn false;\n"}}},
	{Name: "reply-skb", Desc: "IPv4 echo in the received skb itself (headers rebuilt, routed, ip_local_out()): no new skb, no payload copy, no udp_sendmsg(); kernel_sendmsg() otherwise",
		Edits: replySkb},
	{Name: "reply-skb-unbound", Desc: "reply-skb on a WQ_UNBOUND workqueue (the drain may run on a CPU other than the one whose softirq queued it)",
		Edits: append(append([]Edit{}, replySkb...), unboundEdits...)},
	{Name: "wq-spill", Desc: "per-CPU workqueue; a drain that used up its budget requeues itself on the next online CPU (a backlog moves off the CPU that queued it)",
		Edits: spillEdits},
}

// spillEdits requeue an exhausted drain on the next online CPU instead of
// the current one. The work item is non-reentrant, so while the backlog
// lasts the data-ready callback's queue_work() finds it running there and
// queues it there; once the socket is empty it is local again.
var spillEdits = []Edit{
	{"echo.c", "#include <linux/sched.h>\n", "#include <linux/cpumask.h>\n#include <linux/sched.h>\n"},
	{"echo.c", "/*\n * kecho_work - drain the socket.",
		"static int kecho_spill_cpu(void)\n{\n\tint cpu = cpumask_next(raw_smp_processor_id(), cpu_online_mask);\n\n" +
			"\tif (cpu >= nr_cpu_ids)\n\t\tcpu = cpumask_first(cpu_online_mask);\n\treturn cpu;\n}\n\n" +
			"/*\n * kecho_work - drain the socket."},
	{"echo.c", "\t\tqueue_work(srv->wq, &srv->work);", "\t\tqueue_work_on(kecho_spill_cpu(), srv->wq, &srv->work);"},
}

// The edits of the variants that are also combined.
var (
	wqAnchor        = `alloc_workqueue("kecho", KECHO_WQ_PERCPU, 1)`
	unboundEdits    = []Edit{{"main.c", wqAnchor, `alloc_workqueue("kecho", WQ_UNBOUND, 1)`}}
	budget1024Edits = []Edit{{"kecho.h", "#define KECHO_BUDGET\t\t64", "#define KECHO_BUDGET\t\t1024"}}
	noReschedEdits  = []Edit{{"echo.c", "\t\tcond_resched();\n", ""}}
)

// combo joins the edits of the variants that won on their own.
func combo(unbound bool) []Edit {
	e := append(append(append([]Edit{}, echoFromSkb...), budget1024Edits...), noReschedEdits...)
	if unbound {
		e = append(e, unboundEdits...)
	}
	return e
}

// echoFromSkb answers from the received skb when its payload is linear,
// and copies into kecho's buffer only when it is not: the copy call
// becomes kecho_echo_data(), which points srv->data at the bytes to use,
// and the log and the send read srv->data instead of srv->buf.
var echoFromSkb = []Edit{
	{"kecho.h", "\tu8 *buf;", "\tconst u8 *data;\t/* bytes of the datagram being handled */\n\tu8 *buf;"},
	{"echo.c", "skb_copy_bits(skb, 0, srv->buf, ", "kecho_echo_data(srv, skb, "},
	{"echo.c", "static void kecho_send(struct kecho_server *srv",
		"static int kecho_echo_data(struct kecho_server *srv,\n\t\t\t   const struct sk_buff *skb, unsigned int len)\n{\n" +
			"\tif (skb_headlen(skb) >= len) {\n\t\tsrv->data = skb->data;\n\t\treturn 0;\n\t}\n" +
			"\tsrv->data = srv->buf;\n\treturn skb_copy_bits(skb, 0, srv->buf, len);\n}\n\n" +
			"static void kecho_send(struct kecho_server *srv"},
	{"echo.c", "kecho_log_packet(&peer, srv->buf,", "kecho_log_packet(&peer, srv->data,"},
	{"echo.c", ".iov_base = srv->buf,", ".iov_base = (void *)srv->data,"},
}

// replySkb answers an IPv4 datagram with the skb it arrived in instead of
// copying its payload into kecho's buffer and sending a new one through
// kernel_sendmsg(): kecho_reply_skb() swaps ports and addresses, rebuilds
// the UDP and IP headers, routes the reply and hands it to ip_local_out().
// Whatever it cannot take (IPv6, a shared or cloned skb, a payload that is
// not linear, a full send buffer, no route) goes the usual way, so
// kecho_handle() now copies only the logged prefix first and the rest of
// the payload only on that path. An skb that left is the stack's, so
// kecho_handle() says so through *sent and kecho_work() does not free it.
var replySkb = []Edit{
	{"echo.c", "#include <linux/if_packet.h>\n", "#include <linux/if_packet.h>\n#include <linux/if_vlan.h>\n"},
	{"echo.c", "#include <net/ipv6.h>\n", "#include <net/ipv6.h>\n#include <net/route.h>\n"},
	{"echo.c", "static const enum kecho_counter kecho_drop_counter[] = {", `/*
 * kecho_reply_skb - answer an IPv4 datagram with its own skb: the same
 * payload, ports and addresses swapped (the reply's source is the address
 * the datagram was sent to), new UDP and IP headers, routed and sent as
 * udp_sendmsg() would send a new skb for kecho's socket. Returns false,
 * the skb untouched, when it cannot be reused; kecho_send() then meets
 * the same condition (full send buffer, no route) and counts it. Returns
 * true when the skb is gone, counted as kecho_send() counts.
 */
static bool kecho_reply_skb(struct kecho_server *srv,
			    const struct kecho_peer *peer, struct sk_buff *skb)
{
	struct sock *sk = srv->sock->sk;
	struct inet_sock *inet = inet_sk(sk);
	struct net *net = sock_net(sk);
	unsigned int len = skb->len;
	struct flowi4 fl4;
	struct rtable *rt;
	struct udphdr *uh;
	struct iphdr *iph;
	int ttl, err;

	if (sk->sk_family != AF_INET || !peer->is_v4 || skb_shared(skb) ||
	    skb_cloned(skb) || skb_is_nonlinear(skb) || skb_is_gso(skb) ||
	    skb_headroom(skb) < sizeof(*iph) + sizeof(*uh) ||
	    sk_wmem_alloc_get(sk) >= READ_ONCE(sk->sk_sndbuf))
		return false;

	rt = ip_route_output_ports(net, &fl4, sk, peer->saddr4, peer->daddr4,
				   peer->sport, inet->inet_sport, IPPROTO_UDP,
				   RT_TOS(inet->tos),
				   READ_ONCE(sk->sk_bound_dev_if));
	if (IS_ERR(rt))
		return false;
	if (rt->rt_flags & RTCF_BROADCAST) {
		ip_rt_put(rt);
		return false;
	}

	/*
	 * From here on the skb is a datagram generated here: drop what it
	 * carried in (dst, conntrack, secpath and other extensions, mark,
	 * receive timestamp, tc redirect, VLAN tag, hash, receive queue,
	 * control block) and UDP's receive scratch, which aliases skb->dev.
	 */
	skb_scrub_packet(skb, true);
	skb_reset_redirect(skb);
	__vlan_hwaccel_clear_tag(skb);
	skb_clear_hash(skb);
	skb_set_queue_mapping(skb, 0);
	skb->dev = NULL;
	memset(IPCB(skb), 0, sizeof(*IPCB(skb)));

	/*
	 * The UDP header goes back where it was; the checksum is left to
	 * the device (or to the stack's software fallback), as for a send.
	 */
	uh = skb_push(skb, sizeof(*uh));
	skb_reset_transport_header(skb);
	uh->source = inet->inet_sport;
	uh->dest = peer->sport;
	uh->len = htons(skb->len);
	skb->ip_summed = CHECKSUM_NONE;
	skb->csum_valid = 0;
	skb->encapsulation = 0;
	udp_set_csum(sk->sk_no_check_tx, skb, fl4.saddr, fl4.daddr, skb->len);

	/* An IP header without options, as __ip_make_skb() builds it. */
	iph = skb_push(skb, sizeof(*iph));
	skb_reset_network_header(skb);
	skb->ignore_df = ip_sk_ignore_df(sk);
	ttl = inet->uc_ttl;
	if (ttl < 0)
		ttl = ip4_dst_hoplimit(&rt->dst);
	iph->version = 4;
	iph->ihl = sizeof(*iph) >> 2;
	iph->tos = inet->tos;
	iph->frag_off = skb->len <= dst_mtu(&rt->dst) &&
			ip_dont_fragment(sk, &rt->dst) ? htons(IP_DF) : 0;
	iph->ttl = ttl;
	iph->protocol = IPPROTO_UDP;
	iph->saddr = fl4.saddr;
	iph->daddr = fl4.daddr;
	iph->tot_len = htons(skb->len);
	ip_select_ident(net, skb, sk);
	ip_send_check(iph);

	skb->protocol = htons(ETH_P_IP);
	skb->priority = READ_ONCE(sk->sk_priority);
	skb->mark = READ_ONCE(sk->sk_mark);
	skb_dst_set(skb, &rt->dst);
	skb_set_owner_w(skb, sk);

	/*
	 * What ip_send_skb() and udp_send_skb() make of the result, for a
	 * socket without IP_RECVERR (kecho never sets it): a packet the
	 * queue dropped is not an error, so kernel_sendmsg() would have
	 * returned the full length.
	 */
	err = ip_local_out(net, sk, skb);
	if (err > 0)
		err = net_xmit_errno(err);
	if (err)
		IP_INC_STATS(net, IPSTATS_MIB_OUTDISCARDS);
	if (err == -ENOBUFS) {
		UDP_INC_STATS(net, UDP_MIB_SNDBUFERRORS, 0);
		err = 0;
	} else if (!err) {
		UDP_INC_STATS(net, UDP_MIB_OUTDATAGRAMS, 0);
	}

	if (!err) {
		kecho_stat_inc(KECHO_TX_PACKETS);
		kecho_stat_add(KECHO_TX_BYTES, len);
	} else {
		kecho_stat_inc(KECHO_TX_ERRORS);
	}
	return true;
}

static const enum kecho_counter kecho_drop_counter[] = {`},
	{"echo.c", ` * answered, so that the caller frees it as a drop.
 */
static bool kecho_handle(struct kecho_server *srv, struct sk_buff *skb)
{`, ` * answered, so that the caller frees it as a drop. Sets *sent when the
 * echo left in the skb itself: the stack owns it then, and the caller
 * must not free it.
 */
static bool kecho_handle(struct kecho_server *srv, struct sk_buff *skb,
			 bool *sent)
{`},
	{"echo.c", `	/*
	 * Copy what is used: the whole payload for an echo, only the logged
	 * prefix for a drop, so that a flood kecho drops (max_pps, loop,
	 * broadcast) costs no 64 KB copy per datagram.
	 */
	copy = verdict == KECHO_PASS ? len :
	       min_t(unsigned int, len, KECHO_LOG_PREFIX);`, `	/*
	 * Copy only the logged prefix: an echo that reuses the skb needs no
	 * more, one that cannot copies the rest below.
	 */
	copy = min_t(unsigned int, len, KECHO_LOG_PREFIX);`},
	{"echo.c", "\tkecho_send(srv, &peer, len);\n\treturn true;\n}\n", `	*sent = kecho_reply_skb(srv, &peer, skb);
	if (*sent)
		return true;
	if (len > copy &&
	    unlikely(skb_copy_bits(skb, copy, srv->buf + copy, len - copy))) {
		kecho_stat_inc(KECHO_RX_ERRORS);
		return false;
	}
	kecho_send(srv, &peer, len);
	return true;
}
`},
	{"echo.c", "\tstruct sk_buff *skb;\n\tint err;\n", "\tstruct sk_buff *skb;\n\tbool sent;\n\tint err;\n"},
	{"echo.c", `		if (kecho_handle(srv, skb))
			consume_skb(skb);
		else
			kfree_skb(skb);`, `		sent = false;
		if (!kecho_handle(srv, skb, &sent))
			kfree_skb(skb);
		else if (!sent)
			consume_skb(skb);`},
}

// VariantsByName selects variants: "all", or a comma-separated list of
// names (baseline is always measured first, as the reference).
func VariantsByName(spec string) ([]Variant, error) {
	if spec == "" {
		return nil, nil
	}
	if spec == "all" {
		return Variants, nil
	}
	out := []Variant{Variants[0]}
	for _, n := range strings.Split(spec, ",") {
		n = strings.TrimSpace(n)
		if n == "" || n == "baseline" {
			continue
		}
		found := false
		for _, v := range Variants {
			if v.Name == n {
				out = append(out, v)
				found = true
			}
		}
		if !found {
			names := make([]string, len(Variants))
			for i, v := range Variants {
				names[i] = v.Name
			}
			return nil, fmt.Errorf("unknown variant %q (known: %s)", n, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// PrepareSource copies src (the module tree, never modified) to dst,
// leaving out build outputs, and applies the variant's edits to the copy.
// An edit whose text is not found exactly once is an error: the variant
// no longer matches dkms/.
func PrepareSource(src, dst string, v Variant) error {
	err := vm.CopyModuleTree(src, dst)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	for _, e := range v.Edits {
		p := filepath.Join(dst, e.File)
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("variant %s: %w", v.Name, err)
		}
		if n := strings.Count(string(b), e.Old); n != 1 {
			return fmt.Errorf("variant %s: %s has %d copies of %q (want 1): dkms/ changed, update test/bench/driver/variants.go", v.Name, e.File, n, e.Old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), e.Old, e.New, 1)), 0o644); err != nil {
			return err
		}
	}
	return nil
}
