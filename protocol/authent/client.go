package authent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ClientConfig configures a Client. Only Addrs is required.
type ClientConfig struct {
	// Addrs lists the directory's host:port addresses in failover order:
	// the first one that answers is used, and the client returns to an
	// earlier address as soon as it answers again.
	Addrs []string
	// Conns is the size of the connection pool (default 4). Every pooled
	// connection is shared by any number of goroutines (pipelining).
	Conns int
	// Timeout bounds one request, from Do until its reply (default 5s). A
	// +DATA stream may run longer as long as lines keep coming. A request
	// that times out closes its connection and fails every request queued
	// on it, since later replies could no longer be matched.
	Timeout time.Duration
	// DialTimeout bounds one connection attempt to one address, TLS
	// handshake and `auth` included (default 2s, at most Timeout).
	DialTimeout time.Duration
	// Secret, when set, is sent as `auth <secret>` first on every new
	// connection.
	Secret string
	// TLS, when set, wraps every connection in TLS. An empty ServerName is
	// taken from the address being dialed.
	TLS *tls.Config
	// RetryAfter is how long an address that failed is skipped (default
	// 1s); it doubles on repeated failures, up to four times RetryAfter.
	RetryAfter time.Duration
	// IdleTimeout closes a pooled connection unused this long (default 1
	// minute), well before the server's own idle timeout can race with a
	// new request.
	IdleTimeout time.Duration
	// Logger receives one line per address going down or coming back
	// (default: no logging). Request contents are never logged.
	Logger *slog.Logger
}

// Client is a pooled, pipelining authent client with failover over several
// directory addresses. It is safe for concurrent use.
type Client struct {
	cfg    ClientConfig
	secret atomic.Pointer[string] // sent by new connections; SetSecret changes it
	addrs  []*addrState
	slots  []*slot
	next   atomic.Uint32
	closed atomic.Bool
	log    *slog.Logger
}

// addrState tracks the health of one directory address.
type addrState struct {
	addr      string
	downUntil atomic.Int64 // unix nanoseconds; 0 while the address is healthy

	mu    sync.Mutex
	fails int // consecutive failures
}

// slot is one place in the pool: a live connection, or a dial in progress.
type slot struct {
	mu   sync.Mutex
	conn *conn
	dial *dialing
}

type dialing struct {
	done chan struct{}
	conn *conn
	err  error
}

// Status is the status word of a reply's final line.
type Status uint8

// The three final statuses of a reply (docs/protocol.md, "Framing").
const (
	StatusOK   Status = iota + 1 // +OK
	StatusErr                    // -ERR
	StatusDead                   // -DEAD
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "+OK"
	case StatusErr:
		return "-ERR"
	case StatusDead:
		return "-DEAD"
	}
	return "?"
}

// Response is one complete reply as a client receives it.
type Response struct {
	Status Status
	Text   string   // the final line after the status word and one space
	Data   []string // the +DATA lines, without "+DATA "
}

// authRequired reports the server's answer to a client that did not send
// the secret it requires.
func (r Response) authRequired() bool {
	return r.Status == StatusErr && strings.EqualFold(r.Text, "authentication required")
}

// Lines returns the reply's lines as they came, without line endings.
func (r Response) Lines() []string {
	lines := make([]string, 0, len(r.Data)+1)
	for _, d := range r.Data {
		lines = append(lines, "+DATA "+d)
	}
	final := r.Status.String()
	if r.Text != "" {
		final += " " + r.Text
	}
	return append(lines, final)
}

// Err returns nil for +OK and a *ReplyError otherwise: -ERR wraps
// ErrRejected (and ErrNotFound when the text says "does not exist"), -DEAD
// wraps ErrUnavailable. `-ERR authentication required` wraps ErrUnavailable
// instead: the client lacks the directory's secret, an outage that must not
// read as "no such user".
func (r Response) Err() error {
	switch r.Status {
	case StatusOK:
		return nil
	case StatusDead:
		return &ReplyError{Status: r.Status, Text: r.Text, kinds: []error{ErrUnavailable}}
	}
	if r.authRequired() {
		return &ReplyError{Status: r.Status, Text: r.Text, kinds: []error{ErrUnavailable}}
	}
	kinds := []error{ErrRejected}
	if strings.HasSuffix(r.Text, "does not exist") {
		kinds = append(kinds, ErrNotFound)
	}
	return &ReplyError{Status: r.Status, Text: r.Text, kinds: kinds}
}

// Errors of the client. Use errors.Is: the errors returned wrap them.
var (
	// ErrUnavailable: no directory answered (refused, timed out, broken
	// connection, malformed reply) or the directory answered -DEAD. A mail
	// server must treat it as "try again later", never as "no such user".
	ErrUnavailable = errors.New("directory unavailable")
	// ErrRejected: the directory answered -ERR.
	ErrRejected = errors.New("rejected by directory")
	// ErrNotFound: the user does not exist (lookup, del, rename).
	ErrNotFound = errors.New("user not found")
	// ErrBadCredentials: check failed (unknown user or wrong password).
	ErrBadCredentials = errors.New("bad credentials")
	// ErrInvalidRequest: the request was refused before it was sent.
	ErrInvalidRequest = errors.New("invalid request")
)

// ReplyError is a -ERR or -DEAD reply.
type ReplyError struct {
	Status Status // StatusErr or StatusDead
	Text   string // the server's text after the status word
	kinds  []error
}

func (e *ReplyError) Error() string {
	if e.Status == StatusErr && strings.EqualFold(e.Text, "authentication required") {
		return "directory unavailable: it requires authentication (set the secret)"
	}
	if e.Status == StatusDead {
		return "directory unavailable: " + e.Text
	}
	return "directory refused: " + e.Text
}

func (e *ReplyError) Unwrap() []error { return e.kinds }

// RequestError is a request refused before it was sent: a user name or
// password that cannot travel on one protocol line, say.
type RequestError struct {
	Msg string
	// Credentials: the refused words are the user name or password of a
	// check, which no user can have; the error is then ErrBadCredentials
	// too, so a login with them fails as a wrong password does (counted,
	// penalized) rather than as a directory outage.
	Credentials bool
}

func (e *RequestError) Error() string { return "invalid request: " + e.Msg }
func (e *RequestError) Is(target error) bool {
	return target == ErrInvalidRequest || (e.Credentials && target == ErrBadCredentials)
}

// asCredentials marks a RequestError as one about a check's credentials.
func asCredentials(err error) error {
	var re *RequestError
	if errors.As(err, &re) {
		re.Credentials = true
	}
	return err
}

func invalid(format string, args ...any) error {
	return &RequestError{Msg: fmt.Sprintf(format, args...)}
}

// connError is a transport failure of one connection.
type connError struct {
	addr    string
	err     error
	timeout bool // no reply in time: the request is not retried
}

func (e *connError) Error() string   { return "directory unavailable: " + e.addr + ": " + e.err.Error() }
func (e *connError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

var (
	errNoReply      = errors.New("no reply in time")
	errRetired      = errors.New("connection retired")
	errClientClosed = errors.New("client closed")
	errNotSent      = errors.New("connection closed before the request was sent")
)

// NewClient returns a client for cfg. It does not connect: the first
// request does.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("authent client: no directory address")
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	cfg.DialTimeout = min(cfg.DialTimeout, cfg.Timeout)
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	if cfg.Secret != "" {
		if err := checkWord("secret", cfg.Secret, false); err != nil {
			return nil, fmt.Errorf("authent client: %w", err)
		}
	}
	c := &Client{cfg: cfg, log: cfg.Logger}
	c.secret.Store(&cfg.Secret)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, a := range cfg.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("authent client: directory address %q: %w", a, err)
		}
		c.addrs = append(c.addrs, &addrState{addr: a})
	}
	c.slots = make([]*slot, cfg.Conns)
	for i := range c.slots {
		c.slots[i] = &slot{}
	}
	return c, nil
}

// SetSecret changes the secret new connections send (a secret file read
// again on SIGHUP). Connections already authenticated stay as they are.
func (c *Client) SetSecret(secret string) error {
	if secret != "" {
		if err := checkWord("secret", secret, false); err != nil {
			return fmt.Errorf("authent client: %w", err)
		}
	}
	c.secret.Store(&secret)
	return nil
}

// Close closes every connection; requests in flight fail with
// ErrUnavailable, and so does every later request.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	for _, s := range c.slots {
		s.mu.Lock()
		cn := s.conn
		s.conn = nil
		s.mu.Unlock()
		if cn != nil {
			cn.fail(errClientClosed)
		}
	}
	return nil
}

// Do sends one request line (without line ending) and returns its reply.
// A -ERR or -DEAD reply is a Response, not an error: see Response.Err.
// The error is a transport failure wrapping ErrUnavailable (after every
// address was tried), or a RequestError for a line that cannot be sent.
//
// A request that failed on a broken connection is sent again on another
// connection (failing over to the next address), unless it is `del` or
// `rename`, whose effect could have happened already, or it timed out.
func (c *Client) Do(ctx context.Context, line string) (Response, error) {
	if err := checkLine(line); err != nil {
		return Response{}, err
	}
	word, _, _ := strings.Cut(strings.TrimLeft(line, " "), " ")
	switch strings.ToLower(word) {
	case "exit", "quit":
		return Response{}, invalid("%s would close a shared connection", word)
	case "auth":
		return Response{}, invalid("auth is sent by the client itself: set the secret in its configuration")
	}
	retry := !strings.EqualFold(word, "del") && !strings.EqualFold(word, "rename")
	deadline := time.Now().Add(c.cfg.Timeout)
	var last error
	for attempt := 0; attempt <= len(c.addrs); attempt++ {
		if err := ctx.Err(); err != nil {
			return Response{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if time.Now().After(deadline) {
			break
		}
		cn, err := c.acquire(ctx, deadline)
		if err != nil {
			return Response{}, err
		}
		cl := &call{done: make(chan struct{}), deadline: deadline}
		if err := cn.send(cl, line); err != nil {
			last = err
			continue // not sent: always safe to try again
		}
		select {
		case <-cl.done:
		case <-ctx.Done():
			// The reply is dropped by the reader when it comes.
			return Response{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
		if cl.err == nil {
			return cl.resp, nil
		}
		last = cl.err
		var ce *connError
		if !retry || errors.As(cl.err, &ce) && ce.timeout {
			break
		}
	}
	if last == nil {
		last = &connError{addr: strings.Join(c.cfg.Addrs, ","), err: errNoReply, timeout: true}
	}
	var ce *connError
	if !errors.As(last, &ce) {
		last = fmt.Errorf("%w: %w", ErrUnavailable, last)
	}
	return Response{}, last
}

// checkLine refuses what cannot travel as one request line.
func checkLine(line string) error {
	if strings.TrimRight(line, " ") == "" {
		return invalid("empty request")
	}
	if len(line) > MaxLine {
		return invalid("line too long")
	}
	if strings.ContainsAny(line, "\r\n\x00") {
		return invalid("bad characters (CR, LF or NUL) in request")
	}
	return nil
}

// acquire returns a usable pooled connection, dialing one if needed.
func (c *Client) acquire(ctx context.Context, deadline time.Time) (*conn, error) {
	s := c.slots[int(c.next.Add(1)-1)%len(c.slots)]
	now := time.Now()
	s.mu.Lock()
	if c.closed.Load() {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, errClientClosed)
	}
	if cn := s.conn; cn != nil {
		if cn.usable(now) && !c.earlierUp(cn.addr, now) {
			s.mu.Unlock()
			return cn, nil
		}
		// Dead, idle too long, or a fallback while an earlier address
		// may be back: let its requests finish and dial again.
		s.conn = nil
		go cn.retire()
	}
	d := s.dial
	if d == nil {
		d = &dialing{done: make(chan struct{})}
		s.dial = d
		go c.dialSlot(s, d)
	}
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-d.done:
		return d.conn, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-t.C:
		return nil, fmt.Errorf("%w: %s: no connection in time", ErrUnavailable, strings.Join(c.cfg.Addrs, ","))
	}
}

// dialSlot dials for s, detached from the request that asked for it so
// that every request waiting on the slot gets the same connection.
func (c *Client) dialSlot(s *slot, d *dialing) {
	cn, err := c.dial()
	s.mu.Lock()
	s.dial = nil
	if err == nil && c.closed.Load() {
		cn.fail(errClientClosed)
		cn, err = nil, fmt.Errorf("%w: %w", ErrUnavailable, errClientClosed)
	}
	if err == nil {
		s.conn = cn
	}
	d.conn, d.err = cn, err
	s.mu.Unlock()
	close(d.done)
}

// dial connects to the first address that answers: the healthy ones in
// order, then those in backoff (so a lone address is always retried).
func (c *Client) dial() (*conn, error) {
	now := time.Now()
	order := make([]int, 0, len(c.addrs))
	for i, a := range c.addrs {
		if a.downUntil.Load() <= now.UnixNano() {
			order = append(order, i)
		}
	}
	for i, a := range c.addrs {
		if a.downUntil.Load() > now.UnixNano() {
			order = append(order, i)
		}
	}
	deadline := now.Add(c.cfg.Timeout)
	var msgs []string
	for _, i := range order {
		if !time.Now().Before(deadline) {
			break
		}
		cn, err := c.dialAddr(i, deadline)
		if err == nil {
			// The address counts as healthy once a reply comes back
			// (conn.readLoop): a server that accepts and hangs up at once
			// stays in backoff, and its backoff grows.
			return cn, nil
		}
		c.markDown(i, err)
		msg := err.Error()
		if !strings.Contains(msg, c.addrs[i].addr) {
			msg = c.addrs[i].addr + ": " + msg
		}
		msgs = append(msgs, msg)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(msgs, "; "))
}

func (c *Client) dialAddr(i int, deadline time.Time) (*conn, error) {
	addr := c.addrs[i].addr
	if d := time.Now().Add(c.cfg.DialTimeout); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var nc net.Conn
	var err error
	if c.cfg.TLS != nil {
		d := tls.Dialer{Config: c.cfg.TLS}
		nc, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	cn := newConn(c, nc, i)
	if secret := *c.secret.Load(); secret != "" {
		dl, _ := ctx.Deadline()
		if err := cn.authenticate(secret, dl); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
	}
	cn.start()
	return cn, nil
}

// earlierUp reports whether an address before i is out of backoff, so a
// connection to i should make way for it.
func (c *Client) earlierUp(i int, now time.Time) bool {
	for j := 0; j < i; j++ {
		if c.addrs[j].downUntil.Load() <= now.UnixNano() {
			return true
		}
	}
	return false
}

func (c *Client) markDown(i int, err error) {
	a := c.addrs[i]
	a.mu.Lock()
	a.fails++
	wait := c.cfg.RetryAfter << min(a.fails-1, 2)
	a.downUntil.Store(time.Now().Add(wait).UnixNano())
	first := a.fails == 1
	a.mu.Unlock()
	if first {
		c.log.Warn("directory address unavailable", "addr", a.addr, "err", err, "retry_in", wait)
	}
}

func (c *Client) markUp(i int) {
	a := c.addrs[i]
	a.mu.Lock()
	was := a.fails
	a.fails = 0
	a.downUntil.Store(0)
	a.mu.Unlock()
	if was > 0 {
		c.log.Info("directory address back", "addr", a.addr)
	}
}
