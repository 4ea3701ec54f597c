// Command goecho is the benchmark's Go user-space echo peer: one
// goroutine on a net.UDPConn, reading a datagram and writing the same
// bytes back to its source, with the allocation-free AddrPort forms of
// ReadFrom/WriteTo. On SIGTERM it prints one JSON line with its counts.
//
//	goecho -p PORT
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
)

func main() {
	port := flag.Int("p", 5557, "UDP port to serve")
	flag.Parse()
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
