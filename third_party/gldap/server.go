// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Server is an ldap server that you can add a mux (multiplexer) router to and
// then run it to accept and process requests.
type Server struct {
	mu             sync.RWMutex
	logger         hclog.Logger
	connWg         sync.WaitGroup
	listener       net.Listener
	listenerReady  bool
	router         *Mux
	tlsConfig      *tls.Config
	readTimeout    time.Duration
	writeTimeout   time.Duration
	onCloseHandler OnCloseHandler

	disablePanicRecovery bool
	shutdownCancel       context.CancelFunc
	shutdownCtx          context.Context

	// fork additions
	conns          map[*conn]struct{}
	inline         bool
	maxRequestSize int
	idleTimeout    time.Duration
}

// NewServer creates a new ldap server
//
// Options supported:
// - WithLogger allows you pass a logger with whatever hclog.Level you wish including hclog.Off to turn off all logging
// - WithReadTimeout will set a read time out per connection
// - WithWriteTimeout will set a write time out per connection
// - WithOnClose will define a callback the server will call every time a connection is closed
func NewServer(opt ...Option) (*Server, error) {
	cancelCtx, cancelCause := context.WithCancelCause(context.Background())
	cancel := func() { cancelCause(ErrServerStopping) }
	opts := getConfigOpts(opt...)

	if opts.withLogger == nil {
		opts.withLogger = hclog.New(&hclog.LoggerOptions{
			Name:  "Server-logger",
			Level: hclog.Error,
		})
	}

	return &Server{
		router:               &Mux{}, // TODO: a better default router
		logger:               opts.withLogger,
		shutdownCancel:       cancel,
		shutdownCtx:          cancelCtx,
		writeTimeout:         opts.withWriteTimeout,
		readTimeout:          opts.withReadTimeout,
		disablePanicRecovery: opts.withDisablePanicRecovery,
		onCloseHandler:       opts.withOnClose,
		inline:               opts.withInlineRequests,
		maxRequestSize:       opts.withMaxRequestSize,
		idleTimeout:          opts.withIdleTimeout,
	}, nil
}

// Index of rightmost occurrence of b in s.
func last(s string, b byte) int {
	i := len(s)
	for i--; i >= 0; i-- {
		if s[i] == b {
			break
		}
	}
	return i
}

// validateAddrPort will not only validate the address+port, but if it's an ipv6
// literal without proper brackets, it will add them.
func validateAddrPort(addrPort string) (string, error) {
	const op = "gldap.parseAddr"

	lastColon := last(addrPort, ':')
	if lastColon < 0 {
		return "", fmt.Errorf("%s: missing port in addr \"%s\": %w", op, addrPort, ErrInvalidParameter)
	}
	rawHost := addrPort[0:lastColon]
	rawPort := addrPort[lastColon+1:]
	switch {
	case len(rawPort) == 0:
		return "", fmt.Errorf("%s: missing port in addr \"%s\": %w", op, addrPort, ErrInvalidParameter)
	case len(rawHost) == 0:
		return fmt.Sprintf(":%s", rawPort), nil
	case addrPort[0] == '[' && addrPort[len(addrPort)-1] == ']':
		return "", fmt.Errorf("%s: missing port in ipv6 addr : \"%s\": %w", op, addrPort, ErrInvalidParameter)
	}
	// ipv6 literal with proper brackets
	if rawHost[0] == '[' {
		// Expect the first ']' just before the last ':'.
		end := strings.IndexByte(rawHost, ']')
		if end < 0 {
			return "", fmt.Errorf("%s: missing ']' in ipv6 address \"%s\": %w", op, addrPort, ErrInvalidParameter)
		}
		// Note: netip.ParseAddr requires ipv6 addresses without brackets []
		trimmedIp := strings.Trim(rawHost, "[]")
		if _, err := netip.ParseAddr(trimmedIp); err != nil {
			// if net.ParseIP(trimmedIp) == nil {
			return "", fmt.Errorf("%s: invalid ipv6 address \"%s\": %w", op, rawHost, err)
		}
		// ipv6 literal has enclosing brackets, and it's a valid ipv6 address, so we're good
		return fmt.Sprintf("%s:%s", rawHost, rawPort), nil
	}

	// see if we're dealing with a hostname
	ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
	defer cancel()
	hostnames, _ := net.DefaultResolver.LookupHost(ctx, rawHost)
	if len(hostnames) > 0 {
		if rawHost == "::1" {
			// special case for localhost
			return fmt.Sprintf("[%s]:%s", rawHost, rawPort), nil
		}
		return fmt.Sprintf("%s:%s", rawHost, rawPort), nil
	}

	lastColon = last(rawHost, ':')
	if lastColon >= 0 {
		// ipv6 literal without proper brackets.  Note: netip.ParseAddr requires
		// ipv6 addresses without brackets []
		if _, err := netip.ParseAddr(rawHost); err != nil {
			return "", fmt.Errorf("%s: invalid ipv6 address + port \"%s\": %w", op, addrPort, err)
		}
		return fmt.Sprintf("[%s]:%s", rawHost, rawPort), nil
	}
	// ipv4
	if net.ParseIP(rawHost) == nil {
		return "", fmt.Errorf("%s: invalid IP address \"%s\": %w", op, rawHost, ErrInvalidParameter)
	}
	return fmt.Sprintf("%s:%s", rawHost, rawPort), nil
}

// Run will run the server which will listen and serve requests.
//
// Options supported: WithTLSConfig
func (s *Server) Run(addr string, opt ...Option) error {
	const op = "gldap.(Server).Run"
	opts := getConfigOpts(opt...)

	var err error
	addr, err = validateAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.mu.Lock()
		s.listenerReady = true
		s.mu.Unlock()
		return fmt.Errorf("%s: unable to listen to addr %s: %w", op, addr, err)
	}
	if opts.withTLSConfig != nil {
		s.tlsConfig = opts.withTLSConfig
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	return s.Serve(ln)
}

// Serve serves requests on connections accepted from ln until Stop is
// called (fork: upstream could only listen itself, in Run). For LDAPS,
// pass a tls.NewListener. Serve returns once every connection is closed.
func (s *Server) Serve(ln net.Listener) error {
	const op = "gldap.(Server).Serve"
	s.mu.Lock()
	if s.shutdownCtx != nil && s.shutdownCtx.Err() != nil {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listener = ln
	s.listenerReady = true
	s.mu.Unlock()
	s.logger.Info("listening", "op", op, "addr", ln.Addr())
	defer s.connWg.Wait()

	connID := 0
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shutdownCtx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: wait for some to be
				// freed instead of stopping the server.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed, retrying", "op", op, "err", err.Error(), "retry_in", delay.String())
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("%s: error accepting conn: %w", op, err)
		}
		delay = 0
		connID++
		lc, err := newConn(s.shutdownCtx, connID, c, s.logger, s.router)
		if err != nil {
			c.Close()
			return fmt.Errorf("%s: unable to create in-memory conn: %w", op, err)
		}
		lc.inline = s.inline
		lc.idle = s.idleTimeout
		if s.maxRequestSize > 0 {
			lc.maxRequest = s.maxRequestSize
		}
		s.mu.Lock()
		if s.conns == nil {
			s.conns = make(map[*conn]struct{})
		}
		s.conns[lc] = struct{}{}
		s.mu.Unlock()
		localConnID := connID
		s.connWg.Add(1)
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, lc)
				s.mu.Unlock()
				s.connWg.Done()
			}()
			defer func() {
				err := lc.close()
				if err != nil && !isClosed(err) {
					s.logger.Error("error closing conn", "op", op, "conn", localConnID, "err", err)
					// we are intentionally not returning here; since we still
					// need to call the onCloseHandler if it's not nil
				}
				if s.onCloseHandler != nil {
					s.onCloseHandler(localConnID)
				}
			}()

			if !s.disablePanicRecovery {
				// catch and report panics - we don't want it to crash the server if
				// handling a single conn causes a panic
				defer func() {
					if r := recover(); r != nil {
						s.logger.Error("Caught panic while serving request", "op", op, "conn", localConnID, "panic", fmt.Sprintf("%+v", r), "stack", string(debug.Stack()))
					}
				}()
			}
			if s.readTimeout != 0 {
				if err := c.SetReadDeadline(time.Now().Add(s.readTimeout)); err != nil {
					s.logger.Error("unable to set read deadline", "op", op, "err", err.Error())
					return
				}
			}
			if s.writeTimeout != 0 {
				if err := c.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
					s.logger.Error("unable to set write deadline", "op", op, "err", err.Error())
					return
				}
			}
			if err := lc.serveRequests(); err != nil {
				s.logger.Error("error handling conn", "op", op, "conn", localConnID, "err", err.Error())
			}
		}()
	}
}

// Ready will return true when the server is ready to accept connection
func (s *Server) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.listenerReady
}

// Stop a running ldap server: it stops accepting, lets requests in progress
// finish, sends every connection a Notice of Disconnection and closes it
// (fork: upstream waited for idle clients to hang up by themselves).
func (s *Server) Stop() error {
	const op = "gldap.(Server).Stop"
	s.logger.Debug("shutting down")
	s.mu.Lock()
	if s.shutdownCancel != nil {
		s.shutdownCancel()
	}
	ln := s.listener
	for c := range s.conns {
		c.wake()
	}
	s.mu.Unlock()

	if ln != nil {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	s.connWg.Wait()
	s.logger.Debug("stopped")
	return nil
}

// Router sets the mux (multiplexer) router for matching inbound requests
// to handlers.
func (s *Server) Router(r *Mux) error {
	const op = "gldap.(Server).HandleRoutes"
	if r == nil {
		return fmt.Errorf("%s: missing router: %w", op, ErrInvalidParameter)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.router = r
	return nil
}
