package authent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxReplyLine caps one reply line a client accepts. Replies can be longer
// than requests: a user's fields accumulate over several `set`s.
const maxReplyLine = 1 << 20

// call is one request waiting for its reply.
type call struct {
	done     chan struct{} // closed once resp or err is set
	deadline time.Time
	resp     Response
	err      error
}

// conn is one pooled connection. Requests append their line to wbuf and
// their call to pending under mu; the writer goroutine writes whatever has
// accumulated in one write (so concurrent requests are batched), and the
// reader goroutine hands each reply to the oldest pending call.
type conn struct {
	cl   *Client
	nc   net.Conn
	br   *bufio.Reader
	addr int // index in Client.addrs

	kick     chan struct{} // wakes the writer
	quit     chan struct{} // closed when the connection dies
	dead     atomic.Bool
	served   atomic.Bool  // at least one reply was received
	lastUsed atomic.Int64 // unix nanoseconds of the last request

	mu       sync.Mutex
	pending  []*call // FIFO: replies come in request order
	wbuf     []byte
	draining bool  // retired: no new requests; closes once pending is empty
	err      error // why the connection died
}

func newConn(c *Client, nc net.Conn, addr int) *conn {
	cn := &conn{
		cl:   c,
		nc:   nc,
		br:   bufio.NewReaderSize(nc, 32<<10),
		addr: addr,
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
	}
	cn.lastUsed.Store(time.Now().UnixNano())
	return cn
}

func (cn *conn) start() {
	go cn.readLoop()
	go cn.writeLoop()
}

// authenticate sends `auth <secret>` and waits for +OK, before the
// connection is shared.
func (cn *conn) authenticate(secret string, deadline time.Time) error {
	cn.nc.SetDeadline(deadline)
	defer cn.nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(cn.nc, "auth "+secret+"\r\n"); err != nil {
		return err
	}
	line, err := cn.readLine()
	if err != nil {
		return err
	}
	if st, _, ok := parseFinal(line); !ok || st != StatusOK {
		return fmt.Errorf("auth refused: %.60s", line)
	}
	return nil
}

// usable reports whether new requests may go on cn.
func (cn *conn) usable(now time.Time) bool {
	return !cn.dead.Load() && now.UnixNano()-cn.lastUsed.Load() < int64(cn.cl.cfg.IdleTimeout)
}

// send queues a request. errNotSent means the connection is closing and
// the request was not written.
func (cn *conn) send(c *call, line string) error {
	cn.mu.Lock()
	if cn.err != nil || cn.draining {
		cn.mu.Unlock()
		return errNotSent
	}
	if len(cn.pending) == 0 {
		cn.nc.SetReadDeadline(c.deadline)
	}
	cn.pending = append(cn.pending, c)
	cn.wbuf = append(cn.wbuf, line...)
	cn.wbuf = append(cn.wbuf, '\r', '\n')
	cn.mu.Unlock()
	cn.lastUsed.Store(time.Now().UnixNano())
	select {
	case cn.kick <- struct{}{}:
	default: // the writer is already due to run
	}
	return nil
}

// writeLoop writes the accumulated requests. While one write is in
// progress, later requests accumulate and go out together in the next.
func (cn *conn) writeLoop() {
	var spare []byte
	for {
		select {
		case <-cn.kick:
		case <-cn.quit:
			return
		}
		cn.mu.Lock()
		buf := cn.wbuf
		cn.wbuf = spare[:0]
		cn.mu.Unlock()
		if len(buf) == 0 {
			spare = buf
			continue
		}
		cn.nc.SetWriteDeadline(time.Now().Add(cn.cl.cfg.Timeout))
		if _, err := cn.nc.Write(buf); err != nil {
			cn.fail(err)
			return
		}
		if cap(buf) <= 256<<10 {
			spare = buf
		} else {
			spare = nil
		}
	}
}

// readLoop reads replies and hands each to the oldest pending call.
func (cn *conn) readLoop() {
	var data []string
	var extended time.Time
	for {
		line, err := cn.readLine()
		if err != nil {
			cn.fail(err)
			return
		}
		if d, ok := cutData(line); ok {
			data = append(data, d)
			// A long +DATA stream is progress: keep the deadline ahead.
			if now := time.Now(); now.Sub(extended) > cn.cl.cfg.Timeout/4 {
				extended = now
				cn.mu.Lock()
				if len(cn.pending) > 0 && cn.err == nil {
					cn.nc.SetReadDeadline(now.Add(cn.cl.cfg.Timeout))
				}
				cn.mu.Unlock()
			}
			continue
		}
		st, text, ok := parseFinal(line)
		if !ok {
			cn.fail(fmt.Errorf("malformed reply line %.40q", line))
			return
		}
		cn.mu.Lock()
		if len(cn.pending) == 0 {
			cn.mu.Unlock()
			cn.fail(fmt.Errorf("unexpected reply %.40q", line))
			return
		}
		c := cn.pending[0]
		cn.pending[0] = nil
		cn.pending = cn.pending[1:]
		if len(cn.pending) > 0 {
			cn.nc.SetReadDeadline(cn.pending[0].deadline)
		} else {
			cn.nc.SetReadDeadline(time.Time{})
		}
		closeNow := cn.draining && len(cn.pending) == 0
		cn.mu.Unlock()
		extended = time.Time{}
		if !cn.served.Swap(true) {
			cn.cl.markUp(cn.addr)
		}
		c.resp = Response{Status: st, Text: text, Data: data}
		data = nil
		close(c.done)
		if closeNow {
			cn.fail(errRetired)
			return
		}
	}
}

// readLine reads one line without its line ending.
func (cn *conn) readLine() (string, error) {
	line, err := cn.br.ReadSlice('\n')
	if err == nil {
		return string(trimEOL(line)), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	long := append([]byte(nil), line...)
	for {
		line, err = cn.br.ReadSlice('\n')
		long = append(long, line...)
		if len(long) > maxReplyLine {
			return "", errors.New("reply line too long")
		}
		switch {
		case err == nil:
			return string(trimEOL(long)), nil
		case !errors.Is(err, bufio.ErrBufferFull):
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// cutData recognises a `+DATA text` line.
func cutData(line string) (string, bool) {
	if len(line) < 5 || !strings.EqualFold(line[:5], "+DATA") {
		return "", false
	}
	switch {
	case len(line) == 5:
		return "", true
	case line[5] == ' ':
		return line[6:], true
	}
	return "", false
}

// parseFinal recognises a final line: +OK, -ERR or -DEAD, then the end of
// the line or a space and the text.
func parseFinal(line string) (Status, string, bool) {
	word, text, _ := strings.Cut(line, " ")
	switch {
	case strings.EqualFold(word, "+OK"):
		return StatusOK, text, true
	case strings.EqualFold(word, "-ERR"):
		return StatusErr, text, true
	case strings.EqualFold(word, "-DEAD"):
		return StatusDead, text, true
	}
	return 0, "", false
}

// retire stops new requests on cn and closes it once its pending requests
// are answered.
func (cn *conn) retire() {
	cn.mu.Lock()
	cn.draining = true
	idle := len(cn.pending) == 0
	cn.mu.Unlock()
	if idle {
		cn.fail(errRetired)
	}
}

// fail closes cn and fails its pending requests with ErrUnavailable. A
// failure with requests outstanding counts against the address.
func (cn *conn) fail(cause error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = cause
	cn.dead.Store(true)
	calls := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	cn.nc.Close()
	close(cn.quit)
	if cause == errRetired || cause == errClientClosed || len(calls) == 0 && cn.served.Load() {
		// An idle connection closed by the server (idle timeout, restart)
		// says nothing about the address: the next dial will tell. One
		// closed before it answered anything does.
		for _, c := range calls {
			c.err = &connError{addr: cn.cl.addrs[cn.addr].addr, err: cause}
			close(c.done)
		}
		return
	}
	var ne net.Error
	timeout := errors.As(cause, &ne) && ne.Timeout()
	if timeout {
		cause = errNoReply
	}
	cn.cl.markDown(cn.addr, cause)
	e := &connError{addr: cn.cl.addrs[cn.addr].addr, err: cause, timeout: timeout}
	for _, c := range calls {
		c.err = e
		close(c.done)
	}
}
