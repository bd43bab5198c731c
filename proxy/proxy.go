// Package proxy is tohost's front end: clients connect to any proxy, log
// in over IMAP, POP3 or SMTP submission, and are carried to the backend
// that holds their mailbox (the user's `tohost` field in the directory);
// incoming mail on the SMTP port is routed per recipient the same way.
//
// Each protocol's login phase is handled by the proxy itself (imap.go,
// pop3.go, smtp.go); after the login the proxy replays it on the backend
// and becomes a byte pipe (relay.go). route.go turns a directory answer
// into a backend address, backend.go dials it (TLS, PROXY header),
// session.go runs the connections of a listener and their shutdown.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/tohost/tohost/internal/penalty"
	"github.com/tohost/tohost/protocol/authent"
)

// Directory is what the proxy asks of the user directory;
// *authent.Client provides it. Errors wrap authent.ErrBadCredentials (wrong
// password or unknown user), authent.ErrNotFound (lookup of an unknown
// user) or authent.ErrUnavailable (an outage: answered as a temporary
// failure, never as a wrong password).
type Directory interface {
	Check(ctx context.Context, user, pass, ip string) (authent.User, error)
	Lookup(ctx context.Context, user string) (authent.User, error)
}

// Protocol is a protocol the proxy serves.
type Protocol uint8

const (
	IMAP       Protocol = iota
	POP3                // POP3
	Submission          // SMTP submission: authenticated, relayed as the user
	SMTP                // incoming mail: routed per recipient, delivered over LMTP or SMTP
	numProtocols
)

var protocolNames = [numProtocols]string{"imap", "pop3", "submission", "smtp"}

func (p Protocol) String() string { return protocolNames[p] }

// DefaultPorts are the backend ports of each protocol when Config.Ports
// does not say and the user's tohost has no port.
var DefaultPorts = [numProtocols]int{IMAP: 143, POP3: 110, Submission: 587, SMTP: 24}

// BackendTLS says how the proxy secures its connections to backends.
type BackendTLS uint8

const (
	BackendPlain    BackendTLS = iota // no TLS (a trusted network)
	BackendStartTLS                   // STARTTLS / STLS after the greeting
	BackendTLSOnly                    // implicit TLS from the first byte
)

// Config configures a Proxy. The zero value of each field is a working
// default unless it says otherwise.
type Config struct {
	// Directory answers logins and lookups (required).
	Directory Directory
	// DefaultBackend is where users without a tohost go (SurgeMail's
	// g_proxy_default); "" refuses their logins with a temporary error.
	DefaultBackend string
	// Ports are the backend ports by protocol (0: DefaultPorts); a tohost
	// of host:port overrides them.
	Ports [numProtocols]int
	// BackendTLS, with BackendTLSConfig (certificates are verified unless
	// it says InsecureSkipVerify; ServerName is set per backend).
	BackendTLS       BackendTLS
	BackendTLSConfig *tls.Config
	// BackendProxyProtocol sends each backend connection a PROXY v2 header
	// with the client's address.
	BackendProxyProtocol bool
	// ForwardClientIP passes the client's address the protocol's own way:
	// IMAP ID x-originating-ip (Dovecot), SMTP XCLIENT (Postfix), POP3
	// XCLIENT (Dovecot).
	ForwardClientIP bool
	// TLS is the proxy's own certificate, for STARTTLS/STLS to clients.
	// Implicit TLS ports are wrapped by the listener.
	TLS *tls.Config
	// RequireTLS refuses plaintext logins on connections without TLS.
	RequireTLS bool
	// Self lists the names and addresses of this proxy: a tohost naming
	// one of them is a routing loop, refused rather than followed.
	Self []string
	// LoginTimeout bounds the pre-login phase and each wait for the
	// client before login (default 60 s).
	LoginTimeout time.Duration
	// MaxLoginFailures per connection; the next one disconnects (default 3).
	MaxLoginFailures int
	// Penalty delays logins from addresses that failed before (nil: none).
	Penalty *penalty.Penalty[netip.Addr]
	// DialTimeout bounds connecting to a backend, greeting and login
	// included (default 10 s).
	DialTimeout time.Duration
	// DrainTimeout is how long established sessions may go on after the
	// listener closes at shutdown; then they are closed (default 30 s).
	DrainTimeout time.Duration
	// SMTP holds the settings of submission and incoming mail.
	SMTP SMTPOptions
	// Hostname is the name the proxy greets with (default "tohost").
	Hostname string
	Logger   *slog.Logger
	Metrics  *Metrics
}

// Proxy serves the login phases and relays sessions.
type Proxy struct {
	cfg Config
	log *slog.Logger
}

// New returns a Proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	if cfg.Directory == nil {
		return nil, errors.New("proxy: no directory")
	}
	for i, p := range cfg.Ports {
		if p == 0 {
			cfg.Ports[i] = DefaultPorts[i]
		}
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = time.Minute
	}
	if cfg.MaxLoginFailures <= 0 {
		cfg.MaxLoginFailures = 3
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "tohost"
	}
	cfg.SMTP = cfg.SMTP.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BackendTLSConfig == nil {
		cfg.BackendTLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &Proxy{cfg: cfg, log: cfg.Logger}, nil
}

// Errors of a login, each answered in the protocol's own words.
var (
	// ErrBadCredentials: wrong password or unknown user (one answer for
	// both, so nobody learns which names exist).
	ErrBadCredentials = errors.New("authentication failed")
	// ErrTemporary: the directory or the backend cannot serve the user
	// now; the client should try again later.
	ErrTemporary = errors.New("temporarily unavailable")
)

// clientAddr returns the client's address as a net.TCPAddr where it has
// one (for PROXY headers and XCLIENT).
func clientAddr(c net.Conn) *net.TCPAddr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a
	}
	return &net.TCPAddr{IP: net.IPv4zero}
}

// handlers holds each protocol's login phase; each protocol's file sets
// its own entry.
var handlers [numProtocols]func(*Proxy, context.Context, *session)

// Serve serves proto's clients on ln until ctx is done, then drains (see
// Config.DrainTimeout).
func (p *Proxy) Serve(ctx context.Context, ln net.Listener, proto Protocol) error {
	if proto >= numProtocols || handlers[proto] == nil {
		ln.Close()
		return fmt.Errorf("proxy: protocol %d is not served", proto)
	}
	h := handlers[proto]
	return p.serve(ctx, ln, proto, func(ctx context.Context, s *session) { h(p, ctx, s) })
}
