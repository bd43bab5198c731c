// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

// fork: a request's context, cancelled when its client goes away or the
// server stops, so that a long request (a search scanning a big directory)
// does not run on for nobody. Without it a dropped client was noticed only
// when a response was written, and a search that matched nothing was never
// told.

import (
	"context"
	"errors"
	"sync"
	"time"
)

var (
	// ErrClientGone is the cause (context.Cause) of a request context
	// cancelled because no further request can be read from the
	// connection: the client closed it, reset it, or half-closed it.
	ErrClientGone = errors.New("gldap: client closed the connection")
	// ErrServerStopping is the cause of a request context cancelled by
	// Server.Stop.
	ErrServerStopping = errors.New("gldap: server stopping")
)

// Context returns a context that is cancelled when the client closes the
// connection or the server stops (context.Cause: ErrClientGone or
// ErrServerStopping).
//
// With WithInlineRequests nobody reads the connection while a request is
// served, so the first call starts a goroutine that watches it until the
// request ends: it reads ahead (into the connection's buffer, without
// consuming anything) and cancels the context when the read fails. While it
// watches, the connection has no read deadline: the client is waiting for
// an answer, not idle. Once the buffer is full of pipelined requests
// nothing more can be read ahead, and a disconnection is noticed only when
// a response is written. Handlers of quick requests need not call it.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		r.ctx = r.conn.requestContext()
	}
	return r.ctx
}

// requestContext returns the context of the request being served.
func (c *conn) requestContext() context.Context {
	if !c.inline {
		// The reading goroutine cancels c.ctx when its read fails.
		return c.ctx
	}
	ctx, cancel := context.WithCancelCause(c.ctx)
	w := &watcher{c: c, cancel: cancel, done: make(chan struct{})}
	c.watcher = w
	go w.run()
	return ctx
}

// endRequest stops the watcher of the request just served, if it had one,
// and reports whether the client is gone.
func (c *conn) endRequest() (gone bool) {
	w := c.watcher
	if w == nil {
		return false
	}
	c.watcher = nil
	gone = w.stop()
	c.restoreReadDeadline()
	return gone
}

// restoreReadDeadline puts back the idle deadline the watcher lifted.
func (c *conn) restoreReadDeadline() {
	if c.idle > 0 {
		c.readAt = time.Time{} // pushReadDeadline moves it before the next read
		return
	}
	_ = c.raw.SetReadDeadline(time.Time{})
	if c.shutdownCtx.Err() != nil {
		c.wake()
	}
}

// watcher reads ahead on a connection while its request is served.
type watcher struct {
	c      *conn
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu      sync.Mutex
	stopped bool
	gone    bool // written before done is closed
}

func (w *watcher) run() {
	defer close(w.done)
	if !w.lift() {
		return
	}
	r := w.c.reader
	for {
		n := r.Buffered() + 1
		if n > r.Size() {
			return // the buffer is full: nothing more can be read ahead
		}
		_, err := r.Peek(n)
		switch {
		case err == nil:
			// A further request came in: it waits in the buffer,
			// and the watch goes on past it.
		case isTimeout(err):
			if !w.lift() {
				return
			}
		default:
			w.gone = true
			w.cancel(ErrClientGone)
			return
		}
	}
}

// lift removes the read deadline, unless the watch is over: the request
// ended (stop woke the read) or the server is stopping (Stop did, and the
// context is cancelled through its parent). The lock orders it against
// stop, so that a wake-up is never overwritten.
func (w *watcher) lift() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.c.shutdownCtx.Err() != nil {
		return false
	}
	_ = w.c.raw.SetReadDeadline(time.Time{})
	return true
}

// stop ends the watch, waiting until the watcher no longer reads.
func (w *watcher) stop() (gone bool) {
	w.mu.Lock()
	w.stopped = true
	w.c.wake()
	w.mu.Unlock()
	<-w.done
	w.cancel(nil)
	return w.gone
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
