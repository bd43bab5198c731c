// Package pop3 is the backend's POP3 server (RFC 1939) with CAPA and
// RESP-CODES (RFC 2449, 3206), STLS (RFC 2595) and AUTH PLAIN and LOGIN
// (RFC 5034, 4616), over the users' Maildirs (package backend/maildir).
//
// The maildrop is the user's INBOX. A login locks it for POP3 (a second
// session of the same user is refused with [IN-USE]), syncs it and numbers
// its messages; DELE only marks, and the messages go at QUIT. A session
// that ends any other way (the client drops, an idle timeout, shutdown)
// deletes nothing. UIDL is the message's Maildir key, stable across
// sessions.
//
// Answers a client can see:
//
//	-ERR [AUTH] Authentication failed.        wrong password or unknown user
//	-ERR [SYS/TEMP] Temporary failure, ...    directory outage, a mailbox that cannot be read
//	-ERR [SYS/TEMP] Mailbox not on this server.  the user's tohost names another backend
//	-ERR [IN-USE] Mailbox in use ...          another POP3 session holds the maildrop
//	-ERR Line too long.                       a line over MaxLine; the connection is closed
//	-ERR Too many invalid commands.           after maxBadCommands; the connection is closed
//
// A trusted proxy (Config.TrustedProxies) may pass the client's address
// before login with XCLIENT ADDR=<ip> PORT=<port>, as tohost proxy and
// Dovecot do; the address goes to the directory and the logs.
package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

// MaxLine is the longest command line read: RFC 2449 allows 255 octets,
// RFC 1939 512 with the CR LF; clients sending SASL responses need more.
const MaxLine = 8 << 10

// DefaultIdleTimeout is the autologout timer (RFC 1939 asks for at least
// ten minutes).
const DefaultIdleTimeout = 10 * time.Minute

// DefaultDrainTimeout is Config.DrainTimeout's default.
const DefaultDrainTimeout = 30 * time.Second

// maxBadCommands is how many commands refused as unknown, out of place
// or malformed a session may send; the next one closes it.
const maxBadCommands = 10

// maxLoginFailures is how many wrong passwords a connection may try.
const maxLoginFailures = 3

// Directory checks passwords; *authent.Client provides it. Errors wrap
// authent.ErrBadCredentials (wrong password or unknown user) or are an
// outage.
type Directory interface {
	Check(ctx context.Context, user, pass, ip string) (authent.User, error)
}

// Config configures a Server.
type Config struct {
	Store     *maildir.Store // required
	Directory Directory      // required
	// Name is this backend as users' tohost fields give it: a tohost
	// matches when its host part equals Name, case aside, whatever its
	// port. A user whose tohost names another host cannot log in here.
	Name string
	// Hostname is the name in the greeting (default Name, else "tohost").
	Hostname string
	// AcceptDefault lets users without a tohost log in (this backend is
	// the proxy's default).
	AcceptDefault bool
	// Peers are the other backends sharing the mail directory: their
	// users log in here too (home.Rule).
	Peers []string
	// TLS enables STLS. An implicit TLS port (POP3S) is wrapped by its
	// listener instead.
	TLS *tls.Config
	// TrustedProxies may send XCLIENT before login.
	TrustedProxies []netip.Prefix
	// MarkSeen flags messages retrieved with RETR \Seen at QUIT, for IMAP
	// clients of the same mailbox.
	MarkSeen bool
	// IdleTimeout is the autologout timer (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// DrainTimeout is how long sessions may go on with the command they
	// are running when Serve's context ends (a RETR to a slow client);
	// then their connections are closed (default DefaultDrainTimeout).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics // nil: none
}

// Server serves POP3 on any number of listeners.
type Server struct {
	cfg  Config
	name string // Config.Name's host part
	log  *slog.Logger

	sessionEnded func() // tests: called when a session is over and its lock released
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "tohost"
	}
	return &Server{cfg: cfg, name: home.HostOf(strings.TrimSpace(cfg.Name)), log: cfg.Logger.With("protocol", "pop3")}
}

// Refusal is what a listener's gate tells a connection over its cap.
var Refusal = []byte("-ERR [SYS/TEMP] Too many connections, try again later.\r\n")

// Serve accepts connections on ln until ctx ends. Then it stops
// accepting, and each session finishes the command it is running (a QUIT
// finishes its deletions) and is closed with "-ERR [SYS/TEMP] Server
// shutting down."; a session that did not QUIT deletes nothing. Sessions
// still running after Config.DrainTimeout are closed. Serve returns once
// every session has ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	t := &tracker{sessions: make(map[*session]struct{})}
	var (
		drainMu sync.Mutex
		drain   *time.Timer
	)
	shutdown := sync.OnceFunc(func() {
		ln.Close()
		t.stopAll()
		drainMu.Lock()
		drain = time.AfterFunc(s.cfg.DrainTimeout, t.closeAll)
		drainMu.Unlock()
	})
	stop := context.AfterFunc(ctx, shutdown)
	defer func() {
		stop()
		drainMu.Lock()
		if drain != nil {
			drain.Stop()
		}
		drainMu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				t.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			shutdown()
			t.wg.Wait()
			return err
		}
		ss := s.newSession(c)
		t.add(ss)
		go func() {
			defer t.remove(ss)
			ss.serve(ctx)
		}()
	}
}

// tracker knows the sessions of one Serve, to stop them at shutdown.
type tracker struct {
	mu       sync.Mutex
	sessions map[*session]struct{}
	stopping bool
	wg       sync.WaitGroup
}

func (t *tracker) add(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wg.Add(1)
	t.sessions[s] = struct{}{}
	if t.stopping {
		s.stop()
	}
}

func (t *tracker) remove(s *session) {
	t.mu.Lock()
	delete(t.sessions, s)
	t.mu.Unlock()
	t.wg.Done()
}

// closeAll closes the connections of the sessions still running.
func (t *tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.sessions {
		s.raw.Close()
	}
}

func (t *tracker) stopAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopping = true
	for s := range t.sessions {
		s.stop()
	}
}
