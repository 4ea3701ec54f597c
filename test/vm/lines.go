package vm

import (
	"bytes"
	"io"
	"strings"
)

// LineWriter is an io.Writer that hands every whole line written to it to
// Line, without its "\n" and the "\r"s before it; a partial last line waits
// for its end. An error from Line is returned by Write.
type LineWriter struct {
	Line func(line string) error
	buf  []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		if err := w.Line(line); err != nil {
			return 0, err
		}
	}
}

// PrefixWriter copies what is written to W as it comes, with Prefix at
// the start of every line, and drops the serial line's carriage returns
// and SYN (0x16) bytes: a Spec.Output that tells the live guest output
// apart from the host's.
type PrefixWriter struct {
	W      io.Writer
	Prefix string
	mid    bool
}

func (p *PrefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if c == '\r' || c == 0x16 {
			continue
		}
		if !p.mid {
			out = append(out, p.Prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.W.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
