package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpBackend is a connection to a backend's SMTP or LMTP server.
type smtpBackend struct {
	*smtp.Client
	conn  net.Conn // under the client: deadlines while a message streams
	route Route
	log   *slog.Logger
}

// dialBackend connects to the backend r for the client connection c:
// PROXY header and implicit TLS as configured (Proxy.dialBackend), the
// greeting, STARTTLS under BackendStartTLS, XCLIENT ADDR= when
// ForwardClientIP is set and the backend announces it (Postfix's XCLIENT;
// the backend answers it with a new greeting), then EHLO (LHLO with lmtp)
// and, with a user, AUTH PLAIN as that user. The whole setup is bounded by
// DialTimeout; errors wrap ErrTemporary.
//
// go-smtp's client has no XCLIENT, so the steps before it are spoken here
// with net/textproto; the client then gets the connection with a greeting
// put back in front of it, as if the connection were new, and says EHLO
// again (after STARTTLS and XCLIENT the client must anyway).
func (c *smtpConn) dialBackend(r Route, lmtp bool, user, pass string) (*smtpBackend, error) {
	p, s := c.p, c.s
	start := time.Now()
	conn, err := p.dialBackend(c.ctx, &r, s.c) // its deadline: now + DialTimeout
	if err != nil {
		return nil, err
	}
	fail := func(step string, err error) (*smtpBackend, error) {
		conn.Close()
		p.cfg.Metrics.backendFailed()
		return nil, fmt.Errorf("%w: backend %s: %s: %v", ErrTemporary, r.Addr, step, err)
	}
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return fail("greeting", err)
	}
	hello := "EHLO"
	if lmtp {
		hello = "LHLO"
	}
	ehlo := func() (map[string]string, error) {
		msg, err := smtpCmd(tp, 250, "%s %s", hello, p.cfg.Hostname)
		if err != nil {
			return nil, err
		}
		ext := map[string]string{}
		for i, line := range strings.Split(msg, "\n") {
			if i == 0 {
				continue // the server's name
			}
			k, v, _ := strings.Cut(line, " ")
			ext[strings.ToUpper(k)] = v
		}
		return ext, nil
	}
	if p.cfg.BackendTLS == BackendStartTLS {
		ext, err := ehlo()
		if err != nil {
			return fail(hello, err)
		}
		if _, ok := ext["STARTTLS"]; !ok {
			return fail("STARTTLS", errors.New("not offered"))
		}
		if _, err := smtpCmd(tp, 220, "STARTTLS"); err != nil {
			return fail("STARTTLS", err)
		}
		if tp.R.Buffered() > 0 {
			return fail("STARTTLS", errors.New("data before the TLS handshake"))
		}
		ctx, cancel := context.WithDeadline(c.ctx, start.Add(p.cfg.DialTimeout))
		tc, err := p.startTLS(ctx, conn, r) // closes conn and counts a failure
		cancel()
		if err != nil {
			return nil, err
		}
		conn = tc
		conn.SetDeadline(start.Add(p.cfg.DialTimeout))
		tp = textproto.NewConn(conn)
	}
	if p.cfg.ForwardClientIP && s.ip.IsValid() {
		ext, err := ehlo()
		if err != nil {
			return fail(hello, err)
		}
		if smtpHasWord(ext["XCLIENT"], "ADDR") {
			if _, err := smtpCmd(tp, 220, "XCLIENT ADDR=%s", smtpXclientAddr(s.ip)); err != nil {
				return fail("XCLIENT", err)
			}
		}
	}
	rc := &smtpReplayConn{Conn: conn, r: io.MultiReader(strings.NewReader("220 "+r.Host+"\r\n"), tp.R)}
	var cl *smtp.Client
	if lmtp {
		cl = smtp.NewClientLMTP(rc)
	} else {
		cl = smtp.NewClient(rc)
	}
	cl.CommandTimeout = p.cfg.DialTimeout
	if err := cl.Hello(p.cfg.Hostname); err != nil {
		return fail(hello, err)
	}
	if user != "" {
		if err := cl.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			return fail("AUTH", err)
		}
	}
	cl.CommandTimeout = c.opt.IdleTimeout
	conn.SetDeadline(time.Time{})
	return &smtpBackend{Client: cl, conn: conn, route: r, log: s.log}, nil
}

// smtpCmd sends one command and reads its reply, which must have code.
func smtpCmd(tp *textproto.Conn, code int, format string, args ...any) (string, error) {
	id, err := tp.Cmd(format, args...)
	if err != nil {
		return "", err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	_, msg, err := tp.ReadResponse(code)
	return msg, err
}

// smtpXclientAddr writes ip as XCLIENT's ADDR wants it: IPv6 with the
// IPV6: prefix (Postfix's XCLIENT_README).
func smtpXclientAddr(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		return "IPV6:" + ip.String()
	}
	return ip.String()
}

// smtpHasWord reports whether the space-separated list has word (any case).
func smtpHasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// smtpReplayConn is a connection whose reads come from r first: what was
// read ahead of the client, behind a replayed greeting.
type smtpReplayConn struct {
	net.Conn
	r io.Reader
}

func (c *smtpReplayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// sendData sends DATA to the backend *b and streams the message r from
// the client into it; the caller reads the backend's reply by closing the
// returned writer. Nothing is buffered beyond a copy buffer, so a message
// of any size passes in bounded memory. Each read from the client and
// each write to the backend has IdleTimeout.
//
// When the message cannot be passed whole (the client's stream fails or
// goes over the size limit, or the backend stops taking it), the backend
// connection is closed instead of ending the message: an ended message
// would be delivered truncated. The client gets a temporary failure (the
// size limit's 552 for a message that is too big).
func (c *smtpConn) sendData(b **smtpBackend, r io.Reader) (*smtp.DataCommand, error) {
	be := *b
	w, err := be.Data()
	if err != nil {
		return nil, smtpReply(err, b)
	}
	cr := &smtpTimedReader{r: r, conn: c.conn.Conn(), d: c.opt.IdleTimeout}
	bw := &smtpTimedWriter{w: w, conn: be.conn, d: c.opt.IdleTimeout}
	n, err := io.Copy(bw, cr)
	c.p.cfg.Metrics.relayed(c.s.proto, n, 0)
	if err != nil {
		be.log.Warn("smtp: message not passed whole; backend connection dropped", "backend", be.route.Addr, "err", err)
		be.Close()
		*b = nil
		if cr.err != nil {
			var se *smtp.SMTPError
			if errors.As(cr.err, &se) {
				return nil, se
			}
			return nil, smtpErrClientLost
		}
		return nil, smtpErrBackendLost
	}
	return w, nil
}

// smtpTimedReader reads the client's message, each read within d, and
// keeps the error of a read that failed.
type smtpTimedReader struct {
	r    io.Reader
	conn net.Conn
	d    time.Duration
	err  error
}

func (t *smtpTimedReader) Read(b []byte) (int, error) {
	t.conn.SetReadDeadline(time.Now().Add(t.d))
	n, err := t.r.Read(b)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// smtpTimedWriter writes to the backend, each write within d.
type smtpTimedWriter struct {
	w    io.Writer
	conn net.Conn
	d    time.Duration
}

func (t *smtpTimedWriter) Write(b []byte) (int, error) {
	t.conn.SetWriteDeadline(time.Now().Add(t.d))
	return t.w.Write(b)
}
