package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
)

// MaxLine is the longest command line the proxy reads before login.
const MaxLine = 8 << 10

// session is one client connection.
type session struct {
	p     *Proxy
	proto Protocol
	c     net.Conn
	r     *bufio.Reader
	ip    netip.Addr
	log   *slog.Logger

	failures int // failed logins on this connection
}

// handler serves one connection's login phase and, after a login, its
// relay. It returns when the session is over; the caller closes s.c.
type handler func(ctx context.Context, s *session)

// tracker knows the open connections of one listener, to close them when
// the drain time is up.
type tracker struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (t *tracker) add(c net.Conn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}

// serve accepts connections on ln and runs h on each until ctx ends.
// Then it stops accepting, lets the sessions run up to DrainTimeout, closes
// those still open, and returns once every one has ended.
func (p *Proxy) serve(ctx context.Context, ln net.Listener, proto Protocol, h handler) error {
	t := &tracker{conns: make(map[net.Conn]struct{})}
	// Sessions get a context that outlives ctx by the drain time, so a
	// session in the middle of a login finishes it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		time.AfterFunc(p.cfg.DrainTimeout, func() {
			cancel()
			t.closeAll()
		})
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				t.wg.Wait()
				return nil
			}
			t.wg.Wait()
			return err
		}
		t.wg.Add(1)
		t.add(c)
		go func() {
			defer t.wg.Done()
			defer t.remove(c)
			defer c.Close()
			p.cfg.Metrics.sessionOpened(proto)
			defer p.cfg.Metrics.sessionClosed(proto)
			s := p.newSession(c, proto)
			h(sctx, s)
		}()
	}
}

func (p *Proxy) newSession(c net.Conn, proto Protocol) *session {
	ip := listen.PeerIP(c) // may read a PROXY header: not in the accept loop
	return &session{
		p:     p,
		proto: proto,
		c:     c,
		r:     bufio.NewReaderSize(c, MaxLine+2), // a whole line of MaxLine and its CR LF
		ip:    ip,
		log:   p.log.With("protocol", proto.String(), "client", ip.String()),
	}
}

// isTLS reports whether the client connection is encrypted (an implicit
// TLS port, or after STARTTLS).
func (s *session) isTLS() bool {
	_, ok := s.c.(*tls.Conn)
	return ok
}

// startTLS upgrades the client connection after the protocol's STARTTLS
// reply has been written. Input the client sent before the handshake is
// refused (RFC 3207 and 2595: a command injected before TLS is an attack).
func (s *session) startTLS() error {
	if s.r.Buffered() > 0 {
		return errors.New("data after STARTTLS before the handshake")
	}
	tc := tls.Server(s.c, s.p.cfg.TLS)
	tc.SetDeadline(time.Now().Add(s.p.cfg.LoginTimeout))
	if err := tc.Handshake(); err != nil {
		return err
	}
	s.c = tc
	s.r.Reset(tc)
	return nil
}

// errLineTooLong: a command line over MaxLine.
var errLineTooLong = errors.New("line too long")

// readLine reads one line before login, without its CR LF, within the
// login timeout.
func (s *session) readLine() (string, error) {
	s.c.SetReadDeadline(time.Now().Add(s.p.cfg.LoginTimeout))
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	if len(line) > MaxLine {
		return "", errLineTooLong
	}
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	return string(line[:n]), nil
}

// write sends text to the client as is, within the login timeout.
func (s *session) write(text string) error {
	s.c.SetWriteDeadline(time.Now().Add(s.p.cfg.LoginTimeout))
	_, err := io.WriteString(s.c, text)
	return err
}

// login checks user's password with the directory and returns the user's
// backend. The error wraps ErrBadCredentials (the client's mistake) or
// ErrTemporary (an outage, a loop, a user with nowhere to go).
func (s *session) login(ctx context.Context, user, pass string) (Route, error) {
	p := s.p
	if err := p.cfg.Penalty.Wait(ctx, s.ip); err != nil {
		return Route{}, fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	start := time.Now()
	u, err := p.cfg.Directory.Check(ctx, user, pass, s.ip.String())
	p.cfg.Metrics.directoryTook(time.Since(start))
	switch {
	case errors.Is(err, authent.ErrBadCredentials):
		s.failures++
		p.cfg.Penalty.Failed(s.ip)
		p.cfg.Metrics.login(s.proto, outcomeFailed)
		s.log.Info("login failed", "user", user)
		return Route{}, ErrBadCredentials
	case err != nil:
		p.cfg.Metrics.login(s.proto, outcomeUnavailable)
		s.log.Warn("login: directory unavailable", "user", user, "err", err)
		return Route{}, fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	p.cfg.Penalty.Succeeded(s.ip)
	r, err := p.route(u, s.proto)
	if err != nil {
		p.cfg.Metrics.login(s.proto, outcomeRefused)
		s.log.Error("login: no route", "user", user, "err", err)
		return Route{}, fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	return r, nil
}

// tooManyFailures reports whether the connection has used up its login
// attempts.
func (s *session) tooManyFailures() bool { return s.failures >= s.p.cfg.MaxLoginFailures }
