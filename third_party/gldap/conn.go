// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultMaxRequestSize bounds one LDAPMessage from a client (see
// WithMaxRequestSize): big enough for any add or modify of a directory
// entry, small enough that a client cannot make the server buffer gigabytes.
const DefaultMaxRequestSize = 1 << 20

// conn is a connection to an ldap client
type conn struct {
	mu sync.Mutex // mutex for the conn

	connID      int
	netConn     net.Conn
	logger      hclog.Logger
	router      *Mux
	shutdownCtx context.Context
	requestsWg  sync.WaitGroup

	reader   *bufio.Reader
	writer   *bufio.Writer
	writerMu sync.Mutex // shared lock across all ResponseWriter's to prevent data races

	// inline serves requests one after the other in the reading
	// goroutine and flushes responses only when no further request is
	// waiting (fork: see WithInlineRequests).
	inline     bool
	maxRequest int

	// idle closes a connection that neither sends a request nor takes
	// its responses for this long (fork: see WithIdleTimeout). The
	// deadlines move at most every idle/8, so the hot path rarely
	// touches a timer.
	idle      time.Duration
	readAt    time.Time // when the read deadline last moved
	writtenAt time.Time // when the write deadline last moved (under writerMu)

	raw net.Conn // the accepted connection, under any TLS layer
	// ctx is cancelled when no further request can be read, or the
	// server stops; watcher watches the connection while an inline
	// request that asked for its Context is served (fork: cancel.go).
	ctx     context.Context
	cancel  context.CancelCauseFunc
	watcher *watcher
	valueMu sync.Mutex
	value   any // the application's per-connection state
	isTLS   bool
}

// newConn will create a new Conn from an accepted net.Conn which will be used
// to serve requests to an ldap client.
func newConn(shutdownCtx context.Context, connID int, netConn net.Conn, logger hclog.Logger, router *Mux) (*conn, error) {
	const op = "gldap.NewConn"
	if shutdownCtx == nil {
		return nil, fmt.Errorf("%s: missing shutdown context: %w", op, ErrInvalidParameter)
	}
	if connID == 0 {
		return nil, fmt.Errorf("%s: missing connection id: %w", op, ErrInvalidParameter)
	}
	if netConn == nil {
		return nil, fmt.Errorf("%s: missing connection: %w", op, ErrInvalidParameter)
	}
	if logger == nil {
		return nil, fmt.Errorf("%s: missing logger: %w", op, ErrInvalidParameter)
	}
	if router == nil {
		return nil, fmt.Errorf("%s: missing router: %w", op, ErrInvalidParameter)
	}
	c := &conn{
		connID:      connID,
		netConn:     netConn,
		shutdownCtx: shutdownCtx,
		logger:      logger,
		router:      router,
		maxRequest:  DefaultMaxRequestSize,
		raw:         netConn,
	}
	c.ctx, c.cancel = context.WithCancelCause(shutdownCtx)
	_, c.isTLS = netConn.(*tls.Conn)
	if err := c.initConn(netConn); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

// serveRequests until the connection is closed or the shutdownCtx is cancelled
// as the server stops
func (c *conn) serveRequests() error {
	const op = "gldap.serveRequests"
	defer c.cancel(ErrClientGone)

	requestID := 0
	for {
		requestID++
		w, err := newResponseWriter(c.writer, &c.writerMu, c.logger, c.connID, requestID)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		w.noFlush = c.inline

		if c.shutdownCtx.Err() != nil {
			return c.disconnect(w, ResultUnavailable, "server stopping", nil)
		}
		c.pushReadDeadline()
		r, err := c.readRequest(w.requestID)
		if err != nil {
			var re *requestError
			var de *decodeError
			switch {
			case c.shutdownCtx.Err() != nil:
				// Stop woke this connection up from its read.
				return c.disconnect(w, ResultUnavailable, "server stopping", nil)
			case errors.As(err, &re) && re.resp != nil:
				// A request we can answer: say what is wrong
				// with it and go on serving the connection.
				if err := c.answer(w, re.resp); err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
				continue
			case !errors.As(err, &re) && !errors.As(err, &de) && isClosed(err):
				return nil // connection is closed
			default:
				// RFC 4511 4.1.1: a PDU that cannot be parsed
				// ends the session, with a Notice of
				// Disconnection saying why.
				return c.disconnect(w, ResultProtocolError, "malformed request", fmt.Errorf("%s: error reading request: %w", op, err))
			}
		}

		switch {
		// TODO: rate limit in-flight requests per conn and send a
		// BusyResponse when the limit is reached.  This limit per conn
		// should be configurable

		case r.routeOp == unbindRouteOperation:
			// support an optional unbind route
			if c.router.unbindRoute != nil {
				c.router.unbindRoute.handler()(w, r)
			}
			// stop serving requests when UnbindRequest is received
			return nil

		case r.routeOp == abandonRouteOperation:
			// Abandon has no response (RFC 4511 4.11). Inline
			// requests are done by the time the next one is read;
			// a concurrent one is left to finish.
			continue

		// If it's a StartTLS request, then we can't dispatch it concurrently,
		// since the conn needs to complete it's TLS negotiation before handling
		// any other requests.
		// see: https://datatracker.ietf.org/doc/html/rfc4511#section-4.14.1
		case r.extendedName == ExtendedOperationStartTLS:
			c.router.serve(w, r)
			if c.endRequest() {
				return nil
			}
			if err := c.flush(); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		case c.inline:
			c.router.serve(w, r)
			if c.endRequest() {
				return nil // the client is gone: nothing to read or answer
			}
			// Flush only when the client has sent nothing more:
			// pipelined requests then share one write.
			if c.reader.Buffered() == 0 {
				if err := c.flush(); err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
			}
		default:
			c.requestsWg.Add(1)
			go func() {
				defer c.requestsWg.Done()
				c.router.serve(w, r)
			}()
		}
	}
}

// answer writes one response and flushes it.
func (c *conn) answer(w *ResponseWriter, resp Response) error {
	if err := w.Write(resp); err != nil {
		return err
	}
	return c.flush()
}

func (c *conn) flush() error {
	c.writerMu.Lock()
	defer c.writerMu.Unlock()
	return c.writer.Flush()
}

// disconnect sends a Notice of Disconnection (RFC 4511 4.4.1) and returns
// err: the connection is then closed by the server.
func (c *conn) disconnect(w *ResponseWriter, code int, msg string, err error) error {
	c.requestsWg.Wait() // the responses of running requests go first
	c.idle = 0          // no more deadline pushes: a second at most
	c.netConn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.answer(w, NewNoticeOfDisconnection(code, msg))
	return err
}

// isClosed reports whether err only says that the client went away (or the
// server woke a connection that had nothing to read).
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(err.Error(), "unexpected EOF") ||
		strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "broken pipe")
}

func (c *conn) readRequest(requestID int) (*Request, error) {
	const op = "gldap.(Conn).readRequest"

	c.mu.Lock()
	msg, err := c.readMessage()
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: error reading request %d/%d: %w", op, c.connID, requestID, err)
	}
	if m, ok := parseSearch(msg); ok && !c.logger.IsDebug() {
		return &Request{ID: requestID, conn: c, message: m, routeOp: searchRouteOperation}, nil
	}
	p, err := c.decodePacket(requestID, msg)
	if err != nil {
		return nil, fmt.Errorf("%s: error reading packet for %d/%d: %w", op, c.connID, requestID, err)
	}
	r, err := newRequest(requestID, c, p)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			err = &decodeError{err}
		}
		return nil, fmt.Errorf("%s: unable to create new in-memory request for %d/%d: %w", op, c.connID, requestID, err)
	}

	return r, nil
}

func (c *conn) decodePacket(requestID int, msg []byte) (*packet, error) {
	const op = "gldap.decodePacket"
	berPacket, err := decodeMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("%s: error decoding ber packet for %d/%d: %w", op, c.connID, requestID, &decodeError{err})
	}
	p := &packet{Packet: berPacket}
	if c.logger.IsDebug() {
		c.logger.Debug("packet read", "op", op, "conn", c.connID, "requestID", requestID)
		p.Log(c.logger.StandardWriter(&hclog.StandardLoggerOptions{}), 0, false)
	}
	// Simple header is first... let's make sure it's an ldap packet with 2
	// children containing:
	//		[0] is a message ID
	//		[1] is a request header
	if err := p.basicValidation(); err != nil {
		return nil, fmt.Errorf("%s: failed validation: %w", op, &decodeError{err})
	}
	return p, nil
}

// decodeError is a request that was read whole but cannot be decoded; its
// message may say "unexpected EOF" without the connection being closed.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// readMessage reads one whole LDAPMessage (a definite-length SEQUENCE).
// Reading the envelope first bounds the request size before any of it
// is buffered (fork: upstream let ber.ReadPacket accept up to 2 GiB).
func (c *conn) readMessage() ([]byte, error) {
	tag, err := c.reader.ReadByte()
	if err != nil {
		return nil, err
	}
	if tag != 0x30 {
		return nil, &decodeError{fmt.Errorf("expected an LDAPMessage SEQUENCE, got tag 0x%02x", tag)}
	}
	b, err := c.reader.ReadByte()
	if err != nil {
		return nil, err
	}
	head := []byte{tag, b}
	length := int(b)
	if b&0x80 != 0 {
		n := int(b & 0x7f)
		if n == 0 || n > 4 {
			return nil, &decodeError{fmt.Errorf("unsupported LDAPMessage length encoding 0x%02x", b)}
		}
		length = 0
		for i := 0; i < n; i++ {
			b, err := c.reader.ReadByte()
			if err != nil {
				return nil, unexpected(err)
			}
			head = append(head, b)
			length = length<<8 | int(b)
		}
	}
	if length > c.maxRequest {
		return nil, &decodeError{fmt.Errorf("request of %d bytes is over the limit of %d", length, c.maxRequest)}
	}
	// A new buffer per message: the decoded packets slice it.
	buf := make([]byte, len(head)+length)
	copy(buf, head)
	if _, err := io.ReadFull(c.reader, buf[len(head):]); err != nil {
		return nil, unexpected(err)
	}
	return buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (c *conn) initConn(netConn net.Conn) error {
	const op = "gldap.(Conn).initConn"
	if netConn == nil {
		return fmt.Errorf("%s: missing net conn: %w", op, ErrInvalidParameter)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.netConn = netConn
	c.reader = bufio.NewReaderSize(c.netConn, 16<<10)
	iw := &idleWriter{c: c, nc: netConn}
	if c.writer == nil {
		c.writer = bufio.NewWriterSize(iw, 32<<10)
	} else {
		// ResponseWriters share the *bufio.Writer: switch it to the
		// new connection in place (after StartTLS).
		c.writerMu.Lock()
		c.writer.Reset(iw)
		c.writerMu.Unlock()
	}
	return nil
}

// pushReadDeadline moves the idle deadline before a request is read.
func (c *conn) pushReadDeadline() {
	if c.idle <= 0 {
		return
	}
	if now := time.Now(); now.Sub(c.readAt) > c.idle/8 {
		c.readAt = now
		_ = c.raw.SetReadDeadline(now.Add(c.idle))
		if c.shutdownCtx.Err() != nil {
			c.wake() // Stop's wake-up may just have been overwritten
		}
	}
}

// idleWriter moves the write deadline as responses go out, so that a
// client that stops reading cannot hold its connection (and a graceful
// stop) forever, while a long search to a reading client goes on.
type idleWriter struct {
	c  *conn
	nc net.Conn
}

func (w *idleWriter) Write(p []byte) (int, error) {
	if d := w.c.idle; d > 0 {
		if now := time.Now(); now.Sub(w.c.writtenAt) > d/8 {
			w.c.writtenAt = now
			_ = w.c.raw.SetWriteDeadline(now.Add(d))
		}
	}
	return w.nc.Write(p)
}

// wake makes a connection blocked reading its next request return, so that
// it notices the server stopping.
func (c *conn) wake() {
	_ = c.raw.SetReadDeadline(time.Now())
}

func (c *conn) close() error {
	const op = "gldap.(Conn).close"
	c.requestsWg.Wait()
	if err := c.netConn.Close(); err != nil {
		return fmt.Errorf("%s: error closing conn: %w", op, err)
	}
	return nil
}
