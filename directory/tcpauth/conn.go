package tcpauth

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
)

// conn serves one client. The reader goroutine (serve) parses requests.
// Requests on users (check, lookup, set, del, rename) run in goroutines
// of their own, so that a pipelining client's password checks are hashed
// in parallel and its writes share the store's group commit; their
// replies still leave in request order: each finished request marks
// itself ready and whoever holds mu writes the ready replies at the head
// of the queue. A pipeline behaves exactly as if it were served one
// request at a time: a request on a user waits for the earlier writes of
// that user, and a write also for the earlier reads of it, so a read sees
// every earlier write of its user and no later one.
//
// The reader answers a read itself when it has nothing to wait for and is
// expected to be cheap (lookups or checks have lately taken less than
// cheapRead here: a user from a cache, a verification the verification
// cache answers), a lookup whenever nothing is in progress, and ping,
// version, errors and the like: a goroutine would cost more than the
// request, and a thousand of them queueing on the same locks much more.
// Its reply is written at once when nothing is in progress, else queued
// ready. A search or auth waits until everything
// before it is answered, then runs in the reader, which reads nothing
// more meanwhile.
type conn struct {
	srv    *Server
	nc     net.Conn
	r      *bufio.Reader
	admin  bool // from an admin network, or authenticated with the secret
	authed bool // the secret was given (or none is configured)
	// adminNet: admin by --admin-allow, not by the secret (for audit lines)
	adminNet bool
	peer     string // the client's address, for penalties and the hash queue; set before serve
	// authFails counts wrong secrets; at maxAuthFailures the connection
	// is closed. Only the reader touches it (auth runs there).
	authFails int

	mu    sync.Mutex // guards w, werr, queue and waiting
	w     *bufio.Writer
	werr  error
	queue []*op // requests in request order whose replies are not written out
	// waiting is set while the reader waits (for input, a free slot or
	// the requests in progress): a request that finishes then flushes
	// the replies it wrote. Otherwise the reader flushes them once it has
	// nothing more to read, so a pipelining client gets many replies per
	// write.
	waiting bool

	pending sync.WaitGroup      // requests in the queue
	slots   chan struct{}       // caps the requests in the queue
	users   map[string]*userOps // requests in progress per user, for ordering
	scratch authent.Reply       // reply buffer of the reader
	ctx     context.Context     // for store calls; survives shutdown
	idleAt  time.Time           // when the read deadline was last pushed
	lastAt  time.Time           // when the reader last answered a request

	// Recent cost of a check and of a lookup on this connection, in
	// nanoseconds (a moving average, see noteCost). Checks start out as
	// costly, so that the first of a pipeline of hashes does not hold
	// the reader.
	checkCost, lookupCost atomic.Int64
}

// cheapRead is the cost under which a read is answered by the reader;
// maxCost is the most one read counts for in the average.
const (
	cheapRead = 50 * time.Microsecond
	maxCost   = 300 * time.Microsecond
)

// op is one queued request.
type op struct {
	req   authent.Request
	rep   authent.Reply
	deps  []*op // earlier requests it must wait for
	ready bool  // reply rendered (guarded by conn.mu)
	done  chan struct{}
}

func (o *op) finished() bool {
	select {
	case <-o.done:
		return true
	default:
		return false
	}
}

// userOps is what a new request on one user may have to wait for.
type userOps struct {
	write *op   // the latest write of the user
	reads []*op // the reads of the user sent after it
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv:    s,
		nc:     nc,
		r:      bufio.NewReaderSize(nc, authent.MaxLine+64),
		w:      bufio.NewWriterSize(nc, 16<<10),
		authed: s.cfg.Secret == "",
		slots:  make(chan struct{}, s.cfg.MaxInflight),
		users:  make(map[string]*userOps),
	}
	c.checkCost.Store(int64(maxCost))
	return c
}

// cost returns the moving average of cmd's cost, for a read.
func (c *conn) cost(cmd authent.Command) *atomic.Int64 {
	switch cmd {
	case authent.Check:
		return &c.checkCost
	case authent.Lookup:
		return &c.lookupCost
	}
	return nil
}

// noteCost adds a read's cost to its moving average. A cost is counted as
// at most maxCost, so that a cheap read that was slow once (the reader
// descheduled, a garbage collection) does not make reads costly, while
// two slow ones in a row do. Updates racing each other may be lost, which
// does not matter.
func (c *conn) noteCost(cmd authent.Command, d time.Duration) {
	if p := c.cost(cmd); p != nil {
		old := p.Load()
		p.Store(old + (int64(min(d, maxCost))-old)/8)
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
		if c.waiting {
			c.mu.Lock()
			c.waiting = false
			c.mu.Unlock()
		}
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
		c.answer(nil, err.Error())
		return true
	}
	if msg := c.refusal(req.Cmd); msg != "" {
		c.srv.cfg.Metrics.count(req.Cmd, outcomeErr)
		c.answer(nil, msg)
		return true
	}
	switch req.Cmd {
	case authent.Set, authent.Del, authent.Rename:
		c.async(req, true)
	case authent.Check, authent.Lookup:
		// A lookup is answered at once when nothing is in progress, as
		// it always was; a check only when checks have been cheap.
		cheap := c.cost(req.Cmd).Load() < int64(cheapRead)
		switch {
		case (cheap || req.Cmd == authent.Lookup) && c.inline(&req):
		case cheap && !c.waits(&req):
			c.answer(&req, "")
		default:
			c.async(req, false)
		}
	case authent.Search, authent.Auth:
		// A search reads every user; auth changes what later requests
		// may do.
		c.sync(&req, "")
		if c.authFails >= maxAuthFailures {
			c.srv.log.Warn("tcpauth: too many wrong secrets; closing", "client", c.peer)
			c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if c.flush() == nil {
				listen.CloseGracefully(c.nc, drainTime)
			}
			return false
		}
	default:
		c.answer(&req, "")
	}
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
// request has been answered: with -ERR errMsg when errMsg is set, else by
// handling req.
func (c *conn) sync(req *authent.Request, errMsg string) {
	c.mu.Lock()
	busy := len(c.queue) > 0
	c.mu.Unlock()
	if busy {
		c.flush()
		c.pending.Wait()
	}
	c.mu.Lock()
	c.render(req, errMsg)
	c.mu.Unlock()
}

// render answers a request straight into the output buffer. Called in the
// reader with mu held and nothing queued.
func (c *conn) render(req *authent.Request, errMsg string) {
	// Render straight into the output buffer's free space when it fits.
	c.scratch.Buf = c.w.AvailableBuffer()
	if errMsg != "" {
		c.scratch.Err(errMsg)
	} else {
		c.lastAt = c.handle(req, &c.scratch)
	}
	c.write(c.scratch.Buf)
}

// inline answers req straight into the output buffer if nothing is in
// progress, and reports whether it did.
func (c *conn) inline(req *authent.Request) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 {
		return false
	}
	c.render(req, "")
	return true
}

// waits reports whether the read req must wait for a write in progress.
// Reader only.
func (c *conn) waits(req *authent.Request) bool {
	if len(c.users) == 0 {
		return false
	}
	u := c.users[directory.FoldName(req.User)]
	return u != nil && u.write != nil && !u.write.finished()
}

// answer answers a request in the reader (-ERR errMsg when errMsg is set,
// else req): straight into the output buffer when nothing is in progress,
// else by queueing its reply behind the earlier ones. req must not have
// to wait for any request in progress.
func (c *conn) answer(req *authent.Request, errMsg string) {
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.render(req, errMsg)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	o := &op{}
	if errMsg != "" {
		o.rep.Err(errMsg)
	} else {
		c.handle(req, &o.rep)
	}
	c.acquire()
	c.pending.Add(1)
	c.mu.Lock()
	o.ready = true
	c.queue = append(c.queue, o)
	c.writeReady() // the queue may have emptied meanwhile
	c.mu.Unlock()
}

// async starts a request on users in a goroutine of its own. write tells
// whether it changes them. It blocks while the connection already has
// MaxInflight requests queued.
func (c *conn) async(req authent.Request, write bool) {
	o := &op{req: req, done: make(chan struct{})}
	for _, name := range [2]string{req.User, req.NewUser} {
		if name == "" {
			continue
		}
		key := directory.FoldName(name)
		u := c.users[key]
		if u == nil {
			u = &userOps{}
			c.users[key] = u
		}
		if u.write == o {
			continue // rename to the same name in another case
		}
		if u.write != nil && !u.write.finished() {
			o.deps = append(o.deps, u.write)
		}
		if !write {
			if len(u.reads) == cap(u.reads) {
				u.reads = unfinished(u.reads)
			}
			u.reads = append(u.reads, o)
			continue
		}
		for _, r := range u.reads {
			if !r.finished() {
				o.deps = append(o.deps, r)
			}
		}
		clear(u.reads)
		u.write, u.reads = o, u.reads[:0]
	}
	c.pruneUsers()
	c.acquire()
	c.pending.Add(1)
	c.mu.Lock()
	c.queue = append(c.queue, o)
	c.mu.Unlock()
	go c.run(o)
}

// acquire takes a slot for a request to be queued; while none is free the
// reader waits, and what is written meanwhile is flushed.
func (c *conn) acquire() {
	select {
	case c.slots <- struct{}{}:
	default:
		c.flush()
		c.slots <- struct{}{}
	}
}

// unfinished keeps the requests of ops still in progress, in place.
func unfinished(ops []*op) []*op {
	n := 0
	for _, o := range ops {
		if !o.finished() {
			ops[n] = o
			n++
		}
	}
	clear(ops[n:])
	return ops[:n]
}

func (c *conn) run(o *op) {
	for _, d := range o.deps {
		<-d.done
	}
	o.deps = nil
	c.handle(&o.req, &o.rep)
	close(o.done)
	c.mu.Lock()
	o.ready = true
	c.writeReady()
	c.mu.Unlock()
}

// writeReady writes the replies at the head of the queue that are ready,
// and flushes them while the reader waits. Called with mu held.
func (c *conn) writeReady() {
	n := 0
	for n < len(c.queue) && c.queue[n].ready {
		c.write(c.queue[n].rep.Buf)
		c.queue[n] = nil
		n++
		<-c.slots
		c.pending.Done()
	}
	if n == 0 {
		return
	}
	c.queue = c.queue[n:]
	if c.waiting && c.werr == nil {
		c.werr = c.w.Flush()
	}
}

// pruneUsers forgets users with nothing in progress once the ordering map
// has grown, so a long pipelined import does not keep one entry per user.
// Reader only.
func (c *conn) pruneUsers() {
	if len(c.users) < 2*cap(c.slots) {
		return
	}
	for k, u := range c.users {
		if u.write != nil && !u.write.finished() {
			continue
		}
		if u.reads = unfinished(u.reads); len(u.reads) == 0 {
			delete(c.users, k)
		}
	}
}

// write appends to the output buffer; called with mu held.
func (c *conn) write(b []byte) {
	if c.werr == nil {
		_, c.werr = c.w.Write(b)
	}
}

// flush sends what is written, and has replies written from now on sent
// at once, until the reader has more to read. Reader only.
func (c *conn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = true
	if c.werr == nil && c.w.Buffered() > 0 {
		c.werr = c.w.Flush()
	}
	return c.werr
}

// maxAuthFailures wrong secrets close a connection: a client that knows
// the secret does not get it wrong three times.
const maxAuthFailures = 3

// drainTime bounds the wait for the rest of the input after a fatal error.
const drainTime = 2 * time.Second

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
	listen.CloseGracefully(c.nc, drainTime)
}

// finish waits for the requests in progress, so every request read is
// answered, then sends the last replies.
func (c *conn) finish() {
	c.flush()
	c.pending.Wait()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.flush()
}
