// Package imap is the backend's IMAP server: go-imap's imapserver over the
// users' Maildirs (backend/maildir), with logins checked by the directory.
//
// A user logs in here only when the directory's tohost names this backend
// (Config.Name), or, with Config.AcceptDefault, when it names none. Every
// session of one user shares the user's state (server.go: users); every
// session with one folder selected shares that folder's message list and
// go-imap's MailboxTracker (folder.go), so sessions agree on sequence
// numbers, flags and expunges. Changes made through the Store (deliveries,
// POP3, other sessions) wake the user's watcher, which syncs the open
// folders and queues EXISTS / EXPUNGE / FETCH FLAGS for every session.
//
// go-imap does not know the ID command; conn.go answers ID, CAPABILITY and
// STARTTLS before go-imap sees them, so that a trusted proxy may pass the
// client's address (x-originating-ip) after STARTTLS too.
package imap

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

// Directory checks logins; *authent.Client provides it. Errors wrap
// authent.ErrBadCredentials (or authent.ErrNotFound) for a wrong password
// or unknown user, anything else is an outage. Lookup serves the master
// logins, which have no user password to check.
type Directory interface {
	Check(ctx context.Context, user, pass, ip string) (authent.User, error)
	Lookup(ctx context.Context, user string) (authent.User, error)
}

// DefaultMaxMessageSize is the APPEND limit when Config.MaxMessageSize is 0.
const DefaultMaxMessageSize = 50 << 20

// Config configures a Server.
type Config struct {
	Store     *maildir.Store // required
	Directory Directory      // required
	// Name is this backend's name as users' tohost fields give it
	// ("host" or "host:port").
	Name string
	// AcceptDefault lets in users whose tohost is empty (this backend is
	// the proxy's default backend).
	AcceptDefault bool
	// Peers are the other backends sharing the mail directory: their
	// users are let in too (see home.Rule).
	Peers []string
	// PollInterval, when not zero, is how often the folders that IDLE
	// sessions watch are checked for changes made by other processes
	// sharing the mail directory (maildir.Folder.Changed): they tell this
	// one nothing. Zero: only this process changes the mail.
	PollInterval time.Duration
	// MasterUser and MasterPassword, both set, let an administrator's
	// tool (tohost user move) log in as any user of the directory with
	// AUTHENTICATE PLAIN: the user as authorization identity, MasterUser
	// and MasterPassword as credentials. Such a login skips the home
	// rule: the mover fills a mailbox before its user moves here and
	// reads one after the user has left.
	MasterUser     string
	MasterPassword string
	// TLS enables STARTTLS. Implicit TLS is the listener's business.
	TLS *tls.Config
	// TrustedProxies may send ID x-originating-ip; the address becomes
	// the session's client address (logs, the directory's ip).
	TrustedProxies []netip.Prefix
	// MaxMessageSize limits APPEND (default DefaultMaxMessageSize).
	MaxMessageSize int64
	// CheckTimeout bounds one directory check (default 10 s).
	CheckTimeout time.Duration
	// DrainTimeout is how long sessions busy with a command get to finish
	// it once Serve's context ends (default 30 s); idle ones are told BYE
	// at once.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Server serves IMAP over a Store.
type Server struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	users map[string]*userState
	conns map[*conn]struct{}
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxMessageSize > 1<<32-1 {
		cfg.MaxMessageSize = 1<<32 - 1
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger, users: make(map[string]*userState), conns: make(map[*conn]struct{})}
}

// isMaster reports whether name and password are the master credentials
// (never when they are not configured). The comparison takes the same
// time whatever the guess: both sides are hashed to one length first.
func (s *Server) isMaster(name, password string) bool {
	if s.cfg.MasterUser == "" || s.cfg.MasterPassword == "" {
		return false
	}
	hn, hp := sha256.Sum256([]byte(name)), sha256.Sum256([]byte(password))
	wn, wp := sha256.Sum256([]byte(s.cfg.MasterUser)), sha256.Sum256([]byte(s.cfg.MasterPassword))
	return subtle.ConstantTimeCompare(hn[:], wn[:])&subtle.ConstantTimeCompare(hp[:], wp[:]) == 1
}

// serverCaps are what go-imap announces after login (it adds IDLE,
// UNSELECT, ENABLE and APPENDLIMIT itself). The sessions are IMAP4rev1
// with extensions.
var serverCaps = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapNamespace:    {},
	imap.CapUIDPlus:      {},
	imap.CapMove:         {},
	imap.CapSpecialUse:   {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapStatusSize:   {},
	imap.CapESearch:      {},
	imap.CapSearchRes:    {},
	imap.CapChildren:     {},
}

// Serve serves clients on ln until ctx ends: then the listener closes,
// sessions waiting for a command are told BYE and closed, and those in the
// middle of one get Config.DrainTimeout to finish before they are closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Store == nil || s.cfg.Directory == nil {
		ln.Close()
		return errors.New("imap: Config needs a Store and a Directory")
	}
	var wg sync.WaitGroup
	is := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.newSession(c)
		},
		Caps:         serverCaps,
		Logger:       printfLogger{s.log},
		InsecureAuth: true, // TLS is conn.go's; see Session.Login
	})
	wl := &listener{Listener: ln, s: s, wg: &wg}
	done := make(chan error, 1)
	go func() { done <- is.Serve(wl) }()

	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		ln.Close()
		err = <-done
	}
	// Sessions are ours to end: tell idle ones BYE, give busy ones time.
	s.mu.Lock()
	for c := range s.conns {
		if c.ln == wl {
			c.shutdown()
		}
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(s.cfg.DrainTimeout):
		s.mu.Lock()
		for c := range s.conns {
			if c.ln == wl {
				c.Close()
			}
		}
		s.mu.Unlock()
		<-finished
	}
	return err
}

// listener wraps each accepted connection (conn.go) and counts it.
type listener struct {
	net.Listener
	s  *Server
	wg *sync.WaitGroup
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := newConn(nc, l.s, l)
	l.wg.Add(1)
	l.s.mu.Lock()
	l.s.conns[c] = struct{}{}
	l.s.mu.Unlock()
	l.s.cfg.Metrics.sessionOpened()
	return c, nil
}

// closed is called once by a conn when it closes.
func (l *listener) closed(c *conn) {
	l.s.mu.Lock()
	delete(l.s.conns, c)
	l.s.mu.Unlock()
	l.s.cfg.Metrics.sessionClosed()
	l.wg.Done()
}

// printfLogger gives go-imap's error messages to slog.
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) {
	p.l.Warn("imap: " + fmt.Sprintf(format, args...))
}
