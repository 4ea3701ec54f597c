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
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := ListenAt(filepath.Join(dir, "notify"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if setEnv {
		t.Setenv("NOTIFY_SOCKET", l.Path)
	}
	return l
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
