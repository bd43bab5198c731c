// Package tcpauth serves the authent protocol (protocol/authent) over TCP
// from a directory.Service: the TCPAuth-compatible front end of the
// directory. server.go accepts connections and enforces who may connect,
// conn.go is the per-connection loop (pipelining, ordered replies, group
// commit of writes), handler.go turns one request into its reply.
package tcpauth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tohost/tohost/directory"
)

// Config configures a Server. The zero value of each field is a working
// default.
type Config struct {
	// Allow lists the networks that may connect (default: loopback).
	Allow []netip.Prefix
	// AdminAllow lists the networks that may use admin commands without
	// authenticating (default: loopback).
	AdminAllow []netip.Prefix
	// Secret, when set, must be sent with `auth` before any other command;
	// it also grants admin rights.
	Secret string
	// TLS, when set, wraps every connection in TLS.
	TLS *tls.Config
	// IdleTimeout closes a connection that sent nothing for this long
	// (default, and for 0 or less, 10 minutes).
	IdleTimeout time.Duration
	// MaxConns caps concurrent connections (default, and for 0 or less,
	// 10,000); a connection over the cap gets -DEAD and is closed, so the
	// client retries later.
	MaxConns int
	// MaxInflight caps the writes one connection may have in progress
	// (default, and for 0 or less, 4096).
	MaxInflight int
	// Version is reported by the `version` command.
	Version string
	Logger  *slog.Logger
	Metrics *Metrics
}

// Loopback is the default for Allow and AdminAllow.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Server is the TCPAuth server.
type Server struct {
	svc   *directory.Service
	cfg   Config
	log   *slog.Logger
	slots chan struct{}

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
}

// New returns a Server answering from svc.
func New(svc *directory.Service, cfg Config) *Server {
	if cfg.Allow == nil {
		cfg.Allow = Loopback
	}
	if cfg.AdminAllow == nil {
		cfg.AdminAllow = Loopback
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 10_000
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{
		svc:   svc,
		cfg:   cfg,
		log:   cfg.Logger,
		slots: make(chan struct{}, cfg.MaxConns),
		conns: make(map[*conn]struct{}),
	}
}

// Serve accepts connections on ln until ctx is done, then stops accepting,
// lets every connection finish the requests it has read, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.closeIdle()
	})
	defer stop()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("tcpauth accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			s.wg.Wait()
			return err
		}
		delay = 0
		s.accept(ctx, nc)
	}
}

// accept admits or refuses a new connection and starts serving it.
func (s *Server) accept(ctx context.Context, nc net.Conn) {
	ip := remoteIP(nc)
	if !contains(s.cfg.Allow, ip) {
		s.log.Warn("tcpauth connection refused", "client", ip.String())
		s.cfg.Metrics.refused()
		nc.Close()
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.log.Warn("tcpauth connection limit reached", "client", ip.String(), "max", s.cfg.MaxConns)
		s.cfg.Metrics.refused()
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write([]byte("-DEAD too many connections\r\n"))
		nc.Close()
		return
	}
	if s.cfg.TLS != nil {
		nc = tls.Server(nc, s.cfg.TLS)
	}
	c := newConn(s, nc, contains(s.cfg.AdminAllow, ip))
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		c.serve(ctx)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
}

// closeIdle wakes every connection blocked in a read so that it notices
// the shutdown; requests already read still get their replies.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.SetReadDeadline(time.Now())
	}
}

// secretOK compares in constant time.
func (s *Server) secretOK(secret string) bool {
	return s.cfg.Secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.Secret)) == 1
}

func remoteIP(nc net.Conn) netip.Addr {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func contains(nets []netip.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
