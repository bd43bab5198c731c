package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tohost/tohost/internal/listen"
)

// conn is the connection go-imap serves. It reads the client's commands
// line by line and answers a few itself, since go-imap does not know them
// or would answer them wrongly here:
//
//   - ID (RFC 2971), in any state: a trusted proxy's x-originating-ip
//     becomes the session's client address (before login only);
//   - STARTTLS: conn.go does the handshake, so that ID after STARTTLS is
//     still seen (go-imap would put its TLS above this layer);
//   - CAPABILITY before login, and the greeting: go-imap would offer
//     STARTTLS on a connection that already has TLS.
//
// Everything else, literals included, passes through to go-imap. At
// shutdown a read at a command boundary is answered with BYE and EOF.
type conn struct {
	raw net.Conn // as accepted
	s   *Server
	ln  *listener

	// Read side: only go-imap's reading goroutine.
	br        *bufio.Reader
	pending   []byte
	literal   int64  // literal bytes still to pass through
	atStart   bool   // the next line starts a command
	midLine   bool   // the last line was longer than the buffer
	afterIdle bool   // the next line ends an IDLE
	tag, cmd  string // of the command being read

	wmu      sync.Mutex
	inner    net.Conn // raw, or the TLS connection after STARTTLS
	greeted  bool
	greetBuf []byte
	// out holds go-imap's responses until the session next waits for the
	// client (or out grows large), so a FETCH of a thousand messages is a
	// few writes rather than a thousand. waiting is set while a read waits
	// on the socket: a response written then (an IDLE update from another
	// session) goes out at once.
	out     []byte
	waiting bool
	// A synchronizing literal announced, and go-imap's answer to it.
	syncLit     int64
	syncTag     string
	litAccepted int64
	litRefused  bool

	tls      atomic.Bool
	authed   atomic.Bool
	trusted  bool // the peer may send x-originating-ip
	clientIP atomic.Pointer[netip.Addr]

	dmu          sync.Mutex
	stopping     bool
	readDeadline time.Time // go-imap's

	closeOnce sync.Once
}

const connBuffer = 64 << 10 // more than go-imap's 50 KiB command limit

func newConn(nc net.Conn, s *Server, ln *listener) *conn {
	c := &conn{raw: nc, s: s, ln: ln, inner: nc, atStart: true,
		br: nil}
	c.br = bufio.NewReaderSize(&socketReader{c, nc}, connBuffer)
	if _, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		c.tls.Store(true)
	}
	ip := listen.PeerIP(nc)
	c.clientIP.Store(&ip)
	c.trusted = listen.Contains(s.cfg.TrustedProxies, ip)
	return c
}

// ClientIP is the client's address: the peer's, or what a trusted proxy
// said in ID.
func (c *conn) ClientIP() netip.Addr { return *c.clientIP.Load() }

func (c *conn) preauthCaps() string {
	caps := "IMAP4rev1 SASL-IR LITERAL- ID"
	if !c.tls.Load() && c.s.cfg.TLS != nil {
		caps += " STARTTLS"
	}
	return caps + " AUTH=PLAIN"
}

func (c *conn) Read(p []byte) (int, error) {
	c.syncLiteral()
	for len(c.pending) == 0 {
		if c.literal > 0 {
			n := int64(len(p))
			if n > c.literal {
				n = c.literal
			}
			m, err := c.br.Read(p[:n])
			c.literal -= int64(m)
			if m > 0 {
				return m, nil
			}
			if err = c.readFailed(err, false); err != nil {
				return 0, err
			}
			continue
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readFailed decides what a read error means: at shutdown, a timeout at a
// command boundary ends the session (with BYE unless IDLE is on), one in
// the middle of a command lets it go on. It returns nil to read again.
func (c *conn) readFailed(err error, boundary bool) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.dmu.Lock()
	stopping, dl := c.stopping, c.readDeadline
	c.dmu.Unlock()
	if !stopping || (!dl.IsZero() && time.Now().After(dl)) {
		return err
	}
	if boundary {
		if !c.afterIdle {
			c.writeRaw("* BYE Server shutting down\r\n")
		}
		return io.EOF
	}
	c.inner.SetReadDeadline(dl)
	return nil
}

// next reads one line (or a buffer's worth of a long one) into pending,
// unless it is a command answered here.
func (c *conn) next() error {
	start := c.atStart && !c.midLine
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || (err != nil && len(line) > 0) {
		c.pending = append(c.pending[:0], line...)
		c.midLine = true
		return nil
	}
	if err != nil {
		return c.readFailed(err, start)
	}
	c.midLine = false
	n, lit, nonSync := literalSize(line)
	if start {
		c.tag, c.cmd, _ = splitCommand(line)
	}
	if start && !c.afterIdle && !lit {
		if handled, err := c.intercept(line); handled {
			return err
		}
	}
	if lit && nonSync && (n > maxNonSync || (c.cmd == "APPEND" && n > c.s.cfg.MaxMessageSize)) {
		// go-imap would refuse it but leave the literal to be read as
		// commands: throw the command away here and answer for it.
		return c.refuseLiteral(n)
	}
	idle := start && !c.afterIdle && isCommand(line, "IDLE")
	c.afterIdle = idle
	c.pending = append(c.pending[:0], line...)
	c.atStart = !lit
	switch {
	case lit && nonSync:
		c.literal = n
	case lit:
		// A synchronizing literal comes only if go-imap says "+";
		// Write sees which.
		c.wmu.Lock()
		c.syncLit, c.syncTag = n, c.tag
		c.wmu.Unlock()
	}
	return nil
}

// syncLiteral takes what Write saw of go-imap's answer to a synchronizing
// literal: "+" (the literal follows) or the tagged refusal (it never will).
func (c *conn) syncLiteral() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.litAccepted > 0 {
		c.literal, c.litAccepted = c.litAccepted, 0
	}
	if c.litRefused {
		c.atStart, c.midLine, c.litRefused = true, false, false
	}
}

// maxNonSync is the largest non-synchronizing literal (LITERAL-).
const maxNonSync = 4096

// maxDiscard bounds what refuseLiteral reads and throws away.
const maxDiscard = 1 << 30

// literalSize reports whether line ends with a literal's announcement
// ({n}, {n+} or {n-}), its size, and whether it is non-synchronizing.
func literalSize(line []byte) (n int64, lit, nonSync bool) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	num := string(line[i+1 : len(line)-1])
	nonSync = strings.HasSuffix(num, "+")
	n, err := strconv.ParseInt(strings.TrimRight(num, "+-"), 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, true, nonSync
}

// refuseLiteral reads and throws away the rest of a command whose
// non-synchronizing literal of n bytes is too big, and answers it.
func (c *conn) refuseLiteral(n int64) error {
	for {
		if n > maxDiscard {
			return errors.New("imap: literal too big to discard")
		}
		if _, err := io.CopyN(io.Discard, c.br, n); err != nil {
			return err
		}
		line, err := c.br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			line, err = c.br.ReadSlice('\n')
		}
		if err != nil {
			return err
		}
		var lit, nonSync bool
		if n, lit, nonSync = literalSize(line); !lit || !nonSync {
			break // a synchronizing one is never sent: the client waits
		}
	}
	c.atStart, c.midLine = true, false
	if c.cmd == "APPEND" {
		return c.writeRaw(c.tag + " NO [TOOBIG] Message too big\r\n")
	}
	return c.writeRaw(c.tag + " BAD Non-synchronizing literals are limited to 4096 bytes\r\n")
}

// splitCommand returns a command line's tag, upper-cased name and the rest.
func splitCommand(line []byte) (tag, name, rest string) {
	s := strings.TrimRight(string(line), "\r\n")
	tag, s, _ = strings.Cut(s, " ")
	name, rest, _ = strings.Cut(s, " ")
	return tag, strings.ToUpper(name), rest
}

func isCommand(line []byte, name string) bool {
	_, n, _ := splitCommand(line)
	return n == name
}

// intercept answers ID, STARTTLS and (before login) CAPABILITY.
func (c *conn) intercept(line []byte) (bool, error) {
	tag, name, rest := splitCommand(line)
	if tag == "" || strings.ContainsAny(tag, "+(){%*\"\\]") {
		return false, nil
	}
	switch name {
	case "ID":
		params, ok := parseID(rest)
		if !ok {
			return true, c.writeRaw(tag + " BAD Syntax error in ID\r\n")
		}
		if c.trusted && !c.authed.Load() {
			if v := params["x-originating-ip"]; v != "" {
				if ip, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
					ip = ip.Unmap()
					c.clientIP.Store(&ip)
				}
			}
		}
		return true, c.writeRaw("* ID (\"name\" \"tohost\")\r\n" + tag + " OK ID completed\r\n")
	case "CAPABILITY":
		if c.authed.Load() || rest != "" {
			return false, nil
		}
		return true, c.writeRaw("* CAPABILITY " + c.preauthCaps() + "\r\n" + tag + " OK CAPABILITY completed\r\n")
	case "STARTTLS":
		return true, c.startTLS(tag)
	}
	return false, nil
}

func (c *conn) startTLS(tag string) error {
	switch {
	case c.authed.Load() || c.tls.Load():
		return c.writeRaw(tag + " BAD STARTTLS not available\r\n")
	case c.s.cfg.TLS == nil:
		return c.writeRaw(tag + " NO STARTTLS not supported\r\n")
	}
	if err := c.writeRaw(tag + " OK Begin TLS negotiation now\r\n"); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		// Plaintext sent after STARTTLS before the handshake: never
		// taken as commands of the protected session.
		return errors.New("imap: data after STARTTLS before the handshake")
	}
	tc := tls.Server(c.raw, c.s.cfg.TLS)
	c.raw.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.raw.SetDeadline(time.Time{})
	c.wmu.Lock()
	c.inner = tc
	c.wmu.Unlock()
	c.br.Reset(&socketReader{c, tc})
	c.tls.Store(true)
	return nil
}

// parseID parses ID's argument: NIL or a list of string pairs.
func parseID(s string) (map[string]string, bool) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "NIL") {
		return nil, true
	}
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return nil, false
	}
	s = s[1 : len(s)-1]
	var items []string
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		if len(s) >= 3 && strings.EqualFold(s[:3], "NIL") {
			items = append(items, "")
			s = s[3:]
			continue
		}
		if s[0] != '"' {
			return nil, false
		}
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, false
		}
		items = append(items, b.String())
		s = s[i+1:]
	}
	if len(items)%2 != 0 || len(items) > 60 {
		return nil, false
	}
	m := make(map[string]string, len(items)/2)
	for i := 0; i < len(items); i += 2 {
		m[strings.ToLower(items[i])] = items[i+1]
	}
	return m, true
}

// writeRaw writes a response of conn's own, after what go-imap wrote.
func (c *conn) writeRaw(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.flushLocked(); err != nil {
		return err
	}
	_, err := io.WriteString(c.inner, s)
	return err
}

// outLimit is how much output waits for the session's next read.
const outLimit = 32 << 10

// flushLocked writes out the responses held back; wmu is held.
func (c *conn) flushLocked() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.inner.Write(c.out)
	c.out = c.out[:0]
	return err
}

// socketReader is the socket as conn's reader sees it: before the session
// waits for the client, the responses held back go out.
type socketReader struct {
	c   *conn
	src net.Conn
}

func (r *socketReader) Read(p []byte) (int, error) {
	c := r.c
	c.wmu.Lock()
	err := c.flushLocked()
	c.waiting = true
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := r.src.Read(p)
	c.wmu.Lock()
	c.waiting = false
	c.wmu.Unlock()
	return n, err
}

// Write passes go-imap's output on, but for its greeting, which is
// replaced by one announcing conn's capabilities.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.syncLit > 0 {
		switch {
		case bytes.HasPrefix(p, []byte("+")):
			c.litAccepted, c.syncLit = c.syncLit, 0
		case bytes.HasPrefix(p, []byte(c.syncTag+" ")):
			c.litRefused, c.syncLit = true, 0
		}
	}
	if c.greeted {
		c.out = append(c.out, p...)
		if c.waiting || len(c.out) >= outLimit {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	c.greetBuf = append(c.greetBuf, p...)
	i := bytes.Index(c.greetBuf, []byte("\r\n"))
	if i < 0 {
		return len(p), nil
	}
	c.greeted = true
	out := []byte("* OK [CAPABILITY " + c.preauthCaps() + "] tohost IMAP ready\r\n")
	if !bytes.HasPrefix(c.greetBuf, []byte("* OK")) {
		out = c.greetBuf[:i+2] // a refusal: go-imap's own words
	}
	out = append(out, c.greetBuf[i+2:]...)
	c.greetBuf = nil
	if _, err := c.inner.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *conn) Close() error {
	c.wmu.Lock()
	inner := c.inner
	c.raw.SetWriteDeadline(time.Now().Add(time.Second))
	c.flushLocked() // the last responses (a BYE), if the client still reads
	c.wmu.Unlock()
	err := inner.Close()
	c.raw.Close()
	c.closeOnce.Do(func() { c.ln.closed(c) })
	return err
}

// shutdown makes the next read at a command boundary end the session.
func (c *conn) shutdown() {
	c.dmu.Lock()
	c.stopping = true
	c.dmu.Unlock()
	c.raw.SetReadDeadline(time.Now())
}

func (c *conn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.readDeadline = t
	if c.stopping {
		return c.raw.SetReadDeadline(time.Now())
	}
	return c.raw.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }
