// Command goecho is the benchmark's Go user-space echo peer: one
// goroutine on a net.UDPConn, reading a datagram and writing the same
// bytes back to its source, with the allocation-free AddrPort forms of
// ReadFrom/WriteTo. On SIGTERM it prints one JSON line with its counts.
//
//	goecho -p PORT
//
// With -probe ADDR it is instead the footprint control for kechod: the
// least a Go program can do per health probe (send a 32-byte datagram to
// ADDR, wait up to a second for its echo, every -interval), so that
// kechod's per-probe cost can be told apart from the Go runtime's own
// under emulation.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port := flag.Int("p", 5557, "UDP port to serve")
	probe := flag.String("probe", "", "probe this UDP address every -interval instead of serving")
	interval := flag.Duration("interval", 100*time.Millisecond, "probe interval (with -probe)")
	flag.Parse()
	if *probe != "" {
		os.Exit(prober(*probe, *interval))
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: *port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
	// The same socket buffers as kecho and the C peers (the guest raises
	// net.core.rmem_max/wmem_max so that these take effect).
	_ = conn.SetReadBuffer(2 << 20)
	_ = conn.SetWriteBuffer(4 << 20)

	var rx, tx, rxBytes, txErr atomic.Uint64
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			rx.Add(1)
			rxBytes.Add(uint64(n))
			if _, err := conn.WriteToUDPAddrPort(buf[:n], from); err != nil {
				txErr.Add(1)
				continue
			}
			tx.Add(1)
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	conn.Close()
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"server": "goecho", "rx": rx.Load(), "tx": tx.Load(),
		"rx_bytes": rxBytes.Load(), "tx_errors": txErr.Load(),
	})
}

// prober sends a probe every interval until SIGTERM and prints how many
// came back.
func prober(addr string, interval time.Duration) int {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	t := time.NewTicker(interval)
	defer t.Stop()
	out, in := make([]byte, 32), make([]byte, 64)
	var sent, ok uint64
	for {
		select {
		case <-sig:
			_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"probes": sent, "ok": ok})
			return 0
		case <-t.C:
		}
		sent++
		out[0]++
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write(out); err != nil {
			continue
		}
		if n, err := conn.Read(in); err == nil && n == len(out) && in[0] == out[0] {
			ok++
		}
	}
}
