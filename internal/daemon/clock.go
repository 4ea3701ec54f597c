package daemon

import "time"

// Clock is the time source of the main loop: timestamps and the tickers
// that pace probes and watchdog pings. Tests inject a manual one.
type Clock interface {
	Now() time.Time
	NewTicker(d time.Duration) Ticker
}

// Ticker is a time.Ticker behind an interface.
type Ticker interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time   { return t.t.C }
func (t realTicker) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTicker) Stop()                 { t.t.Stop() }

// RealClock is the system clock.
var RealClock Clock = realClock{}

// nopTicker never fires (the watchdog when it is off).
type nopTicker struct{}

func (nopTicker) C() <-chan time.Time { return nil }
func (nopTicker) Reset(time.Duration) {}
func (nopTicker) Stop()               {}
