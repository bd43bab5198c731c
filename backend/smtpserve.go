package backend

// What the backend's SMTP servers (delivery and submission) share: the
// drain at shutdown, and the count of message transfers under way.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// serveDraining serves srv on ln until ctx is done, then drains (drain)
// and returns once waitIdle has (no transfer under way). It closes ln.
func serveDraining(ctx context.Context, ln net.Listener, srv *smtp.Server, drain time.Duration, log *slog.Logger, waitIdle func()) error {
	tl := &trackingListener{Listener: ln, conns: map[*trackedConn]struct{}{}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tl) }()
	select {
	case err := <-served:
		tl.closeAll()
		waitIdle()
		return err
	case <-ctx.Done():
	}
	// Stop: no new connections; connections between transactions are told
	// so and closed; transactions under way get the drain time, and their
	// connections are closed after their reply (trackedConn.endTx).
	tl.stop()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	err := srv.Shutdown(dctx)
	cancel()
	if err != nil {
		// Past the deadline (or the server already closed): whatever is
		// still open is closed now.
		if n := tl.closeAll(); n > 0 {
			log.Warn("drain deadline passed; connections closed", "conns", n, "err", err)
		}
	}
	<-served
	waitIdle()
	return nil
}

// busyCount counts the message transfers under way.
type busyCount struct {
	mu sync.Mutex
	n  int
	c  *sync.Cond
}

func (b *busyCount) cond() *sync.Cond {
	if b.c == nil {
		b.c = sync.NewCond(&b.mu)
	}
	return b.c
}

func (b *busyCount) enter() {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
}

func (b *busyCount) leave() {
	b.mu.Lock()
	b.n--
	if b.n == 0 {
		b.cond().Broadcast()
	}
	b.mu.Unlock()
}

// wait returns when no transfer is under way.
func (b *busyCount) wait() {
	b.mu.Lock()
	for b.n > 0 {
		b.cond().Wait()
	}
	b.mu.Unlock()
}

// ---- connections ----

// trackingListener knows its open connections, to close those between
// transactions at shutdown (go-smtp's Shutdown only waits for clients to
// leave) and all of them at the end of the drain.
type trackingListener struct {
	net.Listener
	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	stopping bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &trackedConn{Conn: nc, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		nc.Write([]byte("421 4.3.2 Server shutting down, try again later\r\n"))
		nc.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return c, nil
}

// stop closes every connection between transactions, with a 421; the
// others are closed when their transaction ends.
func (l *trackingListener) stop() {
	l.mu.Lock()
	l.stopping = true
	// Closed here as well as by go-smtp's Shutdown, which closes only the
	// listeners its Serve has registered, and Serve may not have started.
	l.Listener.Close()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.closing = true
		idle := !c.inTx
		c.mu.Unlock()
		if idle {
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.Conn.Write([]byte("421 4.3.2 Server shutting down, try again later\r\n"))
			c.Close()
		}
	}
}

// closeAll closes every connection and returns how many were open.
func (l *trackingListener) closeAll() int {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// trackedConn is a connection with its transaction state.
type trackedConn struct {
	net.Conn
	l       *trackingListener
	mu      sync.Mutex
	inTx    bool // between MAIL and the end of the transaction
	closing bool // the server is stopping: close at the end of the transaction
	once    sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// CloseWrite lets listen.CloseGracefully half-close it.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// beginTx marks a transaction begun; false when the server is stopping.
func (c *trackedConn) beginTx() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.inTx = true
	return true
}

// endTx marks the transaction ended; when the server is stopping, the
// connection is closed. go-smtp calls Session.Reset (hence endTx) after
// it wrote the reply to DATA, so the client has its reply.
func (c *trackedConn) endTx() {
	c.mu.Lock()
	c.inTx = false
	closing := c.closing
	c.mu.Unlock()
	if closing {
		c.Close()
	}
}

// tracked finds the trackedConn under go-smtp's connection (which is a
// *tls.Conn over it after STARTTLS).
func tracked(nc net.Conn) *trackedConn {
	for {
		switch t := nc.(type) {
		case *trackedConn:
			return t
		case *tls.Conn:
			nc = t.NetConn()
		default:
			return nil
		}
	}
}

// smtpLogger takes go-smtp's log lines (connection errors) at debug level.
type smtpLogger struct{ log *slog.Logger }

func (l smtpLogger) Printf(format string, v ...any) {
	l.log.Debug("smtp: " + fmt.Sprintf(format, v...))
}
func (l smtpLogger) Println(v ...any) { l.log.Debug("smtp: " + fmt.Sprint(v...)) }
