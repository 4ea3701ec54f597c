// Command udpecho is the demo's minimal user-space UDP echo client: it
// sends one datagram and prints the echo, its round-trip time and whether
// it is byte-identical. It exits 0 only for an identical echo.
//
//	udpecho 127.0.0.1:5555 "hello world"
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("W", 2*time.Second, "how long to wait for the echo")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: udpecho [-W TIMEOUT] HOST:PORT MESSAGE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := echo(flag.Arg(0), []byte(flag.Arg(1)), *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "udpecho:", err)
		os.Exit(1)
	}
}

func echo(addr string, msg []byte, timeout time.Duration) error {
	dst, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.WriteToUDP(msg, dst); err != nil {
		return err
	}
	fmt.Printf("sent %d bytes to %v: %q\n", len(msg), dst, msg)
	buf := make([]byte, 65536)
	if err := c.SetReadDeadline(start.Add(timeout)); err != nil {
		return err
	}
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return fmt.Errorf("no echo within %v: %w", timeout, err)
	}
	rtt := time.Since(start)
	same := "identical"
	if !bytes.Equal(buf[:n], msg) {
		same = "DIFFERENT"
	}
	fmt.Printf("echo from %v after %.2f ms: %q (%d bytes, %s)\n", from, float64(rtt.Microseconds())/1000, buf[:n], n, same)
	if same != "identical" {
		return fmt.Errorf("the echo differs from what was sent")
	}
	return nil
}
