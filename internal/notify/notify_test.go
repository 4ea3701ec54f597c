package notify_test

import (
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/notify"
	"github.com/kecho-dev/kecho/internal/notify/notifytest"
)

func TestMessages(t *testing.T) {
	l := notifytest.Listen(t, true)
	if !notify.Enabled() {
		t.Fatal("Enabled false with NOTIFY_SOCKET set")
	}
	n := notify.New(nil)
	before, err := notify.MonotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	n.Status("starting…")
	n.Ready()
	n.Watchdog()
	n.Reloading()
	n.Stopping()
	after, _ := notify.MonotonicUsec()

	want := []string{"STATUS=starting…", "READY=1", "WATCHDOG=1", "", "STOPPING=1"}
	for i, w := range want {
		m, ok := l.Next(2 * time.Second)
		if !ok {
			t.Fatalf("message %d missing", i)
		}
		if i == 3 {
			re := regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=(\d+)$`)
			sm := re.FindStringSubmatch(m)
			if sm == nil {
				t.Fatalf("reload message %q", m)
			}
			us, _ := strconv.ParseInt(sm[1], 10, 64)
			if us < before || us > after {
				t.Errorf("MONOTONIC_USEC=%d outside [%d, %d]", us, before, after)
			}
			continue
		}
		if m != w {
			t.Errorf("message %d = %q, want %q", i, m, w)
		}
	}
}

func TestNoSocketNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if notify.Enabled() {
		t.Fatal("Enabled without NOTIFY_SOCKET")
	}
	n := notify.New(nil)
	n.Ready() // must not panic or block
	var nilN *notify.Notifier
	nilN.Ready()
}

func TestSendFailureIsNotFatal(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", t.TempDir()+"/nobody")
	var logged strings.Builder
	n := notify.New(slog.New(slog.NewTextHandler(&logged, nil)))
	n.Ready()
	n.Status("x")
	if c := strings.Count(logged.String(), "cannot notify the service manager"); c != 1 {
		t.Errorf("logged %d warnings, want 1:\n%s", c, logged.String())
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, false},
		{"30000000", strconv.Itoa(1), 0, false}, // for another process
		{"30000000", "self", 15 * time.Second, false},
		{"abc", "", 0, true},
	} {
		pid := tc.pid
		if pid == "self" {
			pid = strconv.Itoa(osGetpid())
		}
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", pid)
		got, err := notify.WatchdogInterval()
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q PID=%q: %v, %v; want %v", tc.usec, pid, got, err, tc.want)
		}
	}
}
