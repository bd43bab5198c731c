package tcpauth

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tohost/tohost/protocol/authent"
)

// conn serves one client. The reader goroutine (serve) parses requests and
// answers reads itself. Writes (set, del, rename) run in goroutines of
// their own so that a pipelining client's writes share the store's group
// commit; their replies still leave in request order: each finished write
// marks itself ready and whoever holds mu writes the ready replies at the
// head of the queue. A read waits until every earlier write is answered,
// and a write waits for the earlier writes of the same user, so a pipeline
// behaves exactly as if it were served one request at a time.
type conn struct {
	srv    *Server
	nc     net.Conn
	r      *bufio.Reader
	admin  bool // from an admin network, or authenticated with the secret
	authed bool // the secret was given (or none is configured)

	mu    sync.Mutex // guards w, werr and queue
	w     *bufio.Writer
	werr  error
	queue []*op // writes in request order, not yet written out

	writes  sync.WaitGroup  // writes in progress
	slots   chan struct{}   // caps writes in progress
	last    map[string]*op  // the latest write per user, for ordering
	scratch authent.Reply   // reply buffer of the reader
	ctx     context.Context // for store calls; survives shutdown
	idleAt  time.Time       // when the read deadline was last pushed
	lastAt  time.Time       // when the reader last answered a request
}

// op is one write in progress.
type op struct {
	req   authent.Request
	rep   authent.Reply
	deps  []*op // earlier writes of the same users
	ready bool  // reply rendered (guarded by conn.mu)
	done  chan struct{}
}

func newConn(s *Server, nc net.Conn, admin bool) *conn {
	return &conn{
		srv:    s,
		nc:     nc,
		r:      bufio.NewReaderSize(nc, authent.MaxLine+64),
		w:      bufio.NewWriterSize(nc, 16<<10),
		admin:  admin,
		authed: s.cfg.Secret == "",
		slots:  make(chan struct{}, s.cfg.MaxInflight),
		last:   make(map[string]*op),
	}
}

func (c *conn) serve(ctx context.Context) {
	c.ctx = context.WithoutCancel(ctx)
	c.srv.cfg.Metrics.connOpened()
	defer c.srv.cfg.Metrics.connClosed()
	defer c.nc.Close()
	defer c.finish()
	for {
		if c.r.Buffered() == 0 {
			// Nothing more to read without blocking: send what we have,
			// so a pipelining client gets many replies per write.
			if c.flush() != nil {
				return
			}
			// At shutdown, requests already read are answered; then stop.
			if ctx.Err() != nil {
				return
			}
			c.pushDeadline()
			if ctx.Err() != nil {
				// Shutdown began after the check above and its wake-up
				// may have been overwritten: wake ourselves.
				c.nc.SetReadDeadline(time.Now())
			}
		}
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			c.fatal("line too long")
			return
		}
		if len(line) > 0 && !c.request(line) {
			return
		}
		if err != nil {
			return // EOF, idle timeout, shutdown or a broken connection
		}
	}
}

// pushDeadline moves the idle deadline forward, at most a few times per
// timeout period so the hot path does not touch the timer per request.
// When the reader has just answered a request it takes the time from that
// answer rather than reading the clock again.
func (c *conn) pushDeadline() {
	idle := c.srv.cfg.IdleTimeout
	now := c.lastAt
	if !now.After(c.idleAt) {
		now = time.Now()
	}
	if now.Sub(c.idleAt) > idle/8 {
		c.idleAt = now
		// The write side too: a client that stops reading its replies
		// must not hold the connection (and its writes) forever.
		c.nc.SetDeadline(now.Add(idle))
	}
}

// request handles one line and reports whether to go on reading.
func (c *conn) request(line []byte) bool {
	if len(authent.TrimLine(line)) == 0 {
		return true // blank lines are ignored, as a terminal user expects
	}
	req, err := authent.ParseRequest(line)
	switch {
	case errors.Is(err, authent.ErrLineTooLong), errors.Is(err, authent.ErrBadChars):
		c.fatal(err.Error())
		return false
	case err != nil:
		c.srv.cfg.Metrics.count(authent.Unknown, outcomeErr)
		c.sync(nil, err.Error())
		return true
	}
	if msg := c.refusal(req.Cmd); msg != "" {
		c.srv.cfg.Metrics.count(req.Cmd, outcomeErr)
		c.sync(nil, msg)
		return true
	}
	switch req.Cmd {
	case authent.Set, authent.Del, authent.Rename:
		c.async(req)
		return true
	}
	c.sync(&req, "")
	return req.Cmd != authent.Exit && req.Cmd != authent.Quit
}

// refusal returns why the client may not run cmd now, or "".
func (c *conn) refusal(cmd authent.Command) string {
	if !c.authed && cmd != authent.Auth {
		return "authentication required"
	}
	if cmd.Admin() && !c.admin {
		return "permission denied"
	}
	return ""
}

// sync answers a request in the reader goroutine, after every earlier
// write has been answered: with -ERR errMsg when errMsg is set, else by
// handling req.
func (c *conn) sync(req *authent.Request, errMsg string) {
	c.writes.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Render straight into the output buffer's free space when it fits.
	c.scratch.Buf = c.w.AvailableBuffer()
	if errMsg != "" {
		c.scratch.Err(errMsg)
	} else {
		c.lastAt = c.handle(req, &c.scratch)
	}
	c.write(c.scratch.Buf)
}

// async starts a write. It blocks while the connection already has
// MaxInflight writes in progress.
func (c *conn) async(req authent.Request) {
	o := &op{req: req, done: make(chan struct{})}
	for _, name := range [2]string{req.User, req.NewUser} {
		if name == "" {
			continue
		}
		key := strings.ToLower(name)
		if prev := c.last[key]; prev != nil {
			o.deps = append(o.deps, prev)
		}
		c.last[key] = o
	}
	c.pruneLast()
	c.slots <- struct{}{}
	c.writes.Add(1)
	c.mu.Lock()
	c.queue = append(c.queue, o)
	c.mu.Unlock()
	go c.run(o)
}

func (c *conn) run(o *op) {
	for _, d := range o.deps {
		<-d.done
	}
	c.handle(&o.req, &o.rep)
	c.mu.Lock()
	o.ready = true
	c.writeReady()
	c.mu.Unlock()
	close(o.done)
	<-c.slots
	c.writes.Done()
}

// writeReady writes the replies at the head of the queue that are ready,
// and flushes once the head is a write still in progress (or none is left).
// Called with mu held.
func (c *conn) writeReady() {
	n := 0
	for n < len(c.queue) && c.queue[n].ready {
		c.write(c.queue[n].rep.Buf)
		c.queue[n] = nil
		n++
	}
	if n == 0 {
		return
	}
	c.queue = c.queue[n:]
	if c.werr == nil {
		c.werr = c.w.Flush()
	}
}

// pruneLast forgets finished writes once the ordering map has grown, so a
// long pipelined import does not keep one entry per user. Reader only.
func (c *conn) pruneLast() {
	if len(c.last) < 2*cap(c.slots) {
		return
	}
	for k, o := range c.last {
		select {
		case <-o.done:
			delete(c.last, k)
		default:
		}
	}
}

// write appends to the output buffer; called with mu held.
func (c *conn) write(b []byte) {
	if c.werr == nil {
		_, c.werr = c.w.Write(b)
	}
}

func (c *conn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr == nil && c.w.Buffered() > 0 {
		c.werr = c.w.Flush()
	}
	return c.werr
}

// Bounds of the input read and thrown away after a fatal error.
const (
	drainBytes = 256 << 10
	drainTime  = 2 * time.Second
)

// fatal answers a request that ends the connection. The client may have
// sent more after it (the rest of an overlong line, pipelined requests):
// closing a socket with unread input makes the kernel reset the
// connection, and a reset throws away the reply if the client has not
// read it yet. So the reply is flushed, the write side shut, and the
// input read and discarded for a while before the close, as a lingering
// close in an HTTP server does.
func (c *conn) fatal(msg string) {
	c.srv.cfg.Metrics.count(authent.Unknown, outcomeErr)
	c.sync(nil, msg)
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if c.flush() != nil {
		return
	}
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return // closed outright by serve
	}
	c.nc.SetReadDeadline(time.Now().Add(drainTime))
	io.CopyN(io.Discard, c.nc, drainBytes)
}

// finish waits for the writes in progress, so every request read is
// answered, then sends the last replies.
func (c *conn) finish() {
	c.writes.Wait()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.flush()
}
