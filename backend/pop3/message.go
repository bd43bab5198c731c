package pop3

import (
	"bytes"
	"io"
)

// wireWriter turns a stored message into what POP3 sends (RFC 1939
// section 3): every line ends in CR LF (a bare LF gets its CR; a bare CR
// is left as it is), and with stuff set a line starting with "." gets
// another "." in front. With lines >= 0 it passes the header, the blank
// line after it and then that many body lines, and drops the rest (TOP).
// Write never fails on its own; once the line count is reached it
// swallows the input.
type wireWriter struct {
	w     io.Writer
	stuff bool
	lines int // body lines still to pass; < 0: all

	n         int64 // bytes passed to w, dot-stuffing not counted
	lineStart bool  // nothing on the current line so far
	pendingCR bool  // a CR held back until we see whether LF follows
	inHeader  bool
	done      bool // the line count is reached
	err       error
}

func newWireWriter(w io.Writer, stuff bool, lines int) *wireWriter {
	return &wireWriter{w: w, stuff: stuff, lines: lines, lineStart: true, inHeader: true}
}

func (ww *wireWriter) out(b []byte) {
	if ww.err != nil || len(b) == 0 {
		return
	}
	_, ww.err = ww.w.Write(b)
	ww.n += int64(len(b))
}

var (
	crlf = []byte("\r\n")
	cr   = []byte("\r")
	dot  = []byte(".")
)

// endLine writes the CR LF of a line and counts it.
func (ww *wireWriter) endLine() {
	ww.out(crlf)
	empty := ww.lineStart
	ww.lineStart = true
	if ww.inHeader {
		ww.inHeader = !empty
	} else if ww.lines > 0 {
		ww.lines--
	}
	if !ww.inHeader && ww.lines == 0 {
		ww.done = true
	}
}

func (ww *wireWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && !ww.done && ww.err == nil {
		if ww.pendingCR {
			ww.pendingCR = false
			if p[0] == '\n' {
				ww.endLine()
				p = p[1:]
				continue
			}
			ww.startText('\r')
			ww.out(cr) // a bare CR: part of the line
		}
		switch p[0] {
		case '\r':
			ww.pendingCR = true
			p = p[1:]
			continue
		case '\n':
			ww.endLine()
			p = p[1:]
			continue
		}
		ww.startText(p[0])
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			i = len(p)
		}
		ww.out(p[:i])
		p = p[i:]
	}
	return total, ww.err
}

// startText is called before text starting with c is written on the
// current line: a line starting with "." gets another one in front,
// which is not counted in n.
func (ww *wireWriter) startText(c byte) {
	if !ww.lineStart {
		return
	}
	ww.lineStart = false
	if c == '.' && ww.stuff && ww.err == nil {
		_, ww.err = ww.w.Write(dot)
	}
}

// Close ends the message: a held-back CR, and a CR LF if the last line
// has none, so that the terminating "." is on a line of its own.
func (ww *wireWriter) Close() error {
	if ww.done {
		return ww.err
	}
	if ww.pendingCR {
		ww.pendingCR = false
		ww.startText('\r')
		ww.out(cr)
	}
	if !ww.lineStart {
		ww.out(crlf)
	}
	return ww.err
}

// copyMessage sends r through a wireWriter to w and returns the bytes
// written, dot-stuffing not counted.
func copyMessage(w io.Writer, r io.Reader, stuff bool, lines int) (int64, error) {
	ww := newWireWriter(w, stuff, lines)
	buf := make([]byte, 32<<10)
	for !ww.done {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := ww.Write(buf[:n]); werr != nil {
				return ww.n, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return ww.n, err
		}
	}
	return ww.n, ww.Close()
}

// wireSize is the size of a message as POP3 sends it: CR LF line endings,
// byte-stuffing not counted (RFC 1939 says sizes count the message, not
// the transmission).
func wireSize(r io.Reader) (int64, error) {
	return copyMessage(io.Discard, r, false, -1)
}
