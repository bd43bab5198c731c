// Package tcpauth serves the authent protocol (protocol/authent) over TCP
// from a directory: the TCPAuth-compatible front end. server.go accepts
// connections, conn.go is the per-connection loop (pipelining, ordered
// replies, group commit of writes), handler.go turns one request into its
// reply. Who may connect, how many at once, TLS and PROXY headers are the
// listener's business (internal/listen), not this package's.
package tcpauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/internal/penalty"
)

// Directory is what the server asks of the user directory;
// *directory.Service provides it.
type Directory interface {
	Check(ctx context.Context, name, pass string) (*directory.User, error)
	Lookup(ctx context.Context, name string) (*directory.User, error)
	Set(ctx context.Context, name, pass string, fields []directory.Field) (created bool, err error)
	Delete(ctx context.Context, name string) error
	Rename(ctx context.Context, oldName, newName string) error
	Search(ctx context.Context, pattern string, from, max int, fn func(display string) error) (int, error)
	Count(ctx context.Context) (int64, error)
}

// Refusal is what a connection over the daemon's connection cap is told
// before it is closed: -DEAD, so the client retries later.
var Refusal = []byte("-DEAD too many connections\r\n")

// Config configures a Server. The zero value of each field is a working
// default.
type Config struct {
	// AdminAllow lists the networks that may use admin commands without
	// authenticating (default: loopback).
	AdminAllow []netip.Prefix
	// Secret, when set, must be sent with `auth` before any other command;
	// it also grants admin rights.
	Secret string
	// IdleTimeout closes a connection that sent nothing for this long
	// (default, and for 0 or less, 10 minutes).
	IdleTimeout time.Duration
	// MaxInflight caps the requests (reads and writes) one connection may have in progress
	// (default, and for 0 or less, 4096).
	MaxInflight int
	// Penalty slows guessing: after a failed check (by client address
	// and user) or a wrong secret (by connection address), attempts
	// inside the growing window are refused unchecked. nil: none.
	Penalty *penalty.Penalty[string]
	// Version is reported by the `version` command.
	Version string
	Logger  *slog.Logger
	Metrics *Metrics
}

// Server is the TCPAuth server.
type Server struct {
	svc Directory
	cfg Config
	log *slog.Logger

	secret atomic.Pointer[string] // set by SetSecret; else cfg.Secret

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
}

// New returns a Server answering from svc.
func New(svc Directory, cfg Config) *Server {
	if cfg.AdminAllow == nil {
		cfg.AdminAllow = listen.Loopback
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{svc: svc, cfg: cfg, log: cfg.Logger, conns: make(map[*conn]struct{})}
}

// Serve accepts connections on ln until ctx is done, then stops accepting,
// lets every connection finish the requests it has read, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.closeIdle()
	})
	defer stop()
	defer s.wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.start(ctx, nc)
	}
}

// start serves a new connection in a goroutine of its own.
func (s *Server) start(ctx context.Context, nc net.Conn) {
	c := newConn(s, nc)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// The client's address may come from a PROXY header, which is
		// read here rather than in the accept loop.
		peer := listen.PeerIP(nc)
		c.peer = peer.String()
		c.admin = listen.Contains(s.cfg.AdminAllow, peer)
		c.adminNet = c.admin
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
	want := s.cfg.Secret
	if p := s.secret.Load(); p != nil {
		want = *p
	}
	return want != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1
}

// SetSecret replaces the shared secret (a secret file read again on
// SIGHUP); connections that authenticated keep their rights. Whether a
// secret is required is fixed at start: a server started without one
// cannot be given one, and one started with one cannot lose it.
func (s *Server) SetSecret(secret string) error {
	switch {
	case s.cfg.Secret == "":
		return errors.New("the directory was started without a secret; restart it to require one")
	case secret == "":
		return errors.New("the new secret is empty")
	}
	s.secret.Store(&secret)
	return nil
}
