// Package logging builds kechod's log/slog logger from the log section of
// the configuration: text or JSON lines on a writer (stderr, which systemd
// hands to the journal) at the configured minimum level.
package logging

import (
	"io"
	"log/slog"

	"github.com/kecho-dev/kecho/internal/config"
)

// New returns a logger writing to w in c.Format at c.Level. Values that a
// validated config cannot hold fall back to info and text.
func New(w io.Writer, c config.Log) *slog.Logger {
	lv := new(slog.LevelVar)
	lv.Set(Level(c.Level))
	return slog.New(NewHandler(w, c.Format, lv))
}

// NewHandler is the handler behind New, with the level taken from lv so a
// daemon can change it on reload (a new format needs a new handler).
func NewHandler(w io.Writer, format string, lv slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: lv}
	if format == config.FormatJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// Level maps a log.level value to its slog level.
func Level(s string) slog.Level {
	switch s {
	case config.LevelDebug:
		return slog.LevelDebug
	case config.LevelWarn:
		return slog.LevelWarn
	case config.LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}
