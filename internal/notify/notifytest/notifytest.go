// Package notifytest is a service manager's end of the notification
// protocol for tests: a real unixgram socket whose path is put in
// NOTIFY_SOCKET, and the messages received on it, in order.
package notifytest

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Listener receives notifications.
type Listener struct {
	Path string
	conn *net.UnixConn
	ch   chan string
}

// Listen opens a socket in a fresh temporary directory (short enough for
// sun_path) and, when setEnv, sets NOTIFY_SOCKET to it for the test.
func Listen(t testing.TB, setEnv bool) *Listener {
	t.Helper()
	l, err := ListenAt(socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if setEnv {
		t.Setenv("NOTIFY_SOCKET", l.Path)
	}
	return l
}

// Serve opens a socket like Listen, sets NOTIFY_SOCKET to it for the test
// and hands every message to fn from its reader goroutine, with nothing
// buffered in between: for benchmarks, where draining what the daemon sends
// must cost as little as it can.
func Serve(t testing.TB, fn func(msg []byte)) {
	t.Helper()
	path := socketPath(t)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			fn(buf[:n])
		}
	}()
	t.Setenv("NOTIFY_SOCKET", path)
}

// socketPath is "notify" in a fresh temporary directory (short enough for
// sun_path) that is removed when the test ends.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "notify")
}

// ListenAt opens a socket at path. Close it when done.
func ListenAt(path string) (*Listener, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	l := &Listener{Path: path, conn: conn, ch: make(chan string, 4096)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(l.ch)
				return
			}
			l.ch <- string(buf[:n])
		}
	}()
	return l, nil
}

// Close closes the socket.
func (l *Listener) Close() { l.conn.Close() }

// Next returns the next message, or "" and false after timeout.
func (l *Listener) Next(timeout time.Duration) (string, bool) {
	select {
	case m, ok := <-l.ch:
		return m, ok
	case <-time.After(timeout):
		return "", false
	}
}

// Drain returns the messages received so far without waiting.
func (l *Listener) Drain() []string {
	var out []string
	for {
		select {
		case m, ok := <-l.ch:
			if !ok {
				return out
			}
			out = append(out, m)
		default:
			return out
		}
	}
}

// WaitFor reads messages until one matches the regular expression re,
// returning it and every message before it. It fails the test after
// timeout.
func (l *Listener) WaitFor(t testing.TB, re string, timeout time.Duration) (string, []string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	var seen []string
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no notification matching %q within %v; got:\n  %s", re, timeout, strings.Join(seen, "\n  "))
		}
		m, ok := l.Next(left)
		if !ok {
			continue
		}
		if rx.MatchString(m) {
			return m, seen
		}
		seen = append(seen, m)
	}
}
