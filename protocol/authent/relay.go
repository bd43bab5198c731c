package authent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
)

// relayLine is one input line of the module, or the end of the input.
type relayLine struct {
	text    string
	tooLong bool
	more    bool  // more input is already buffered: no need to flush yet
	err     error // set on the last item: io.EOF or a read error
}

// Relay runs the authent module on in/out (docs/protocol.md, "Module mode"): it
// reads request lines (LF or CRLF), forwards each to the directory through
// c and writes the reply with LF line endings. `exit` and `quit` are
// answered +OK locally and end the relay. When no directory answers, the
// request gets `-DEAD directory unavailable` and the relay goes on: the
// next request tries again. Relay returns nil at the end of the input, or
// ctx's error once ctx is done.
func Relay(ctx context.Context, in io.Reader, out io.Writer, c *Client) error {
	lines := make(chan relayLine)
	stop := make(chan struct{})
	defer close(stop)
	go readRelayLines(in, lines, stop)

	w := bufio.NewWriter(out)
	rep := Reply{LF: true}
	for {
		var l relayLine
		select {
		case l = <-lines:
		case <-ctx.Done():
			w.Flush()
			return ctx.Err()
		}
		if l.err != nil {
			if err := w.Flush(); err != nil {
				return err
			}
			if l.err == io.EOF {
				return nil
			}
			return l.err
		}
		rep.Buf = rep.Buf[:0]
		exit, err := relayOne(ctx, c, l, &rep)
		if err != nil {
			w.Flush()
			return err
		}
		if _, err := w.Write(rep.Buf); err != nil {
			return err
		}
		if exit {
			return w.Flush()
		}
		if !l.more {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

// relayOne answers one line into rep and reports whether it was exit/quit.
// It returns an error only when ctx is done.
func relayOne(ctx context.Context, c *Client, l relayLine, rep *Reply) (exit bool, err error) {
	if l.tooLong {
		rep.Err("line too long")
		return false, nil
	}
	line := strings.TrimRight(l.text, "\r\n \t")
	if line == "" {
		return false, nil // ignored, as the directory does
	}
	if strings.ContainsAny(line, "\x00\r\n") {
		rep.Err("bad characters")
		return false, nil
	}
	word, _, _ := strings.Cut(strings.TrimLeft(line, " "), " ")
	if strings.EqualFold(word, "exit") || strings.EqualFold(word, "quit") {
		rep.OK("")
		return true, nil
	}
	r, err := c.Do(ctx, line)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		var re *RequestError
		if errors.As(err, &re) {
			rep.Err(re.Msg)
		} else {
			rep.Dead("directory unavailable")
		}
		return false, nil
	}
	for _, d := range r.Data {
		rep.Data(d)
	}
	switch {
	case r.authRequired():
		// A configuration error, not "no such user": the mail server
		// must try again later rather than bounce.
		rep.Dead("directory requires a secret (--secret)")
	case r.Status == StatusOK:
		rep.OK(r.Text)
	case r.Status == StatusErr:
		rep.Err(r.Text)
	default:
		rep.Dead(r.Text)
	}
	return false, nil
}

// readRelayLines reads in line by line and sends the lines on out, in a
// goroutine of its own so that Relay can stop on ctx while a read blocks.
// The last item carries the error (io.EOF at the end of the input).
func readRelayLines(in io.Reader, out chan<- relayLine, stop <-chan struct{}) {
	br := bufio.NewReaderSize(in, MaxLine+2)
	send := func(l relayLine) bool {
		select {
		case out <- l:
			return true
		case <-stop:
			return false
		}
	}
	for {
		raw, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			// Skip the rest of the line, then answer it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				send(relayLine{err: err})
				return
			}
			if !send(relayLine{tooLong: true, more: br.Buffered() > 0}) {
				return
			}
			if err == io.EOF {
				send(relayLine{err: io.EOF})
				return
			}
			continue
		case len(raw) > 0:
			text := bytes.TrimRight(raw, "\r\n")
			l := relayLine{text: string(text), tooLong: len(TrimLine(text)) > MaxLine, more: br.Buffered() > 0}
			if !send(l) {
				return
			}
		}
		if err != nil {
			send(relayLine{err: err})
			return
		}
	}
}
