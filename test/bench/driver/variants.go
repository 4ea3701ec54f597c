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
