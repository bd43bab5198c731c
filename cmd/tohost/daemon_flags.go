package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/tohost/tohost/adminhttp"
	"github.com/tohost/tohost/internal/daemon"
	"github.com/tohost/tohost/internal/listen"
)

// logFlags set up logging; every command that logs has them.
type logFlags struct {
	level, format string
}

func (f *logFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.level, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
	fl.StringVar(&f.format, "log-format", "text", "text (key=value) or json, one line per event")
}

func (f *logFlags) logger() (*slog.Logger, error) {
	return daemon.NewLogger(os.Stderr, f.level, f.format)
}

// listenFlags are what every daemon's listeners share: who may connect,
// how many at once, for how long idle, TLS, trusted proxies, the admin
// HTTP listener and the drain deadline.
type listenFlags struct {
	allow           []string
	trustedProxies  []string
	maxConns        int
	idleTimeout     time.Duration
	tlsCert, tlsKey string
	httpAddr        string
	shutdownTimeout time.Duration
	maxConnsPerIP   int                 // set by daemons that have a flag for it
	cert            *listen.Certificate // loaded by tlsConfig; SIGHUP reloads it
}

// listenUse says, for the help of one daemon's shared listener flags, what
// they apply to there: the flags are the same on every daemon, the
// listeners they serve are not.
type listenUse struct {
	httpAddr string // the admin HTTP listener's default address
	http     string // what the admin HTTP listener serves
	tls      string // the listeners --tls-cert/--tls-key serve
	idle     string // the connections --idle-timeout closes
	// noIdle, when set, says why the daemon has no use for --idle-timeout,
	// which is then deprecated there (kept so that old settings still start).
	noIdle string
}

// register adds the flags.
func (f *listenFlags) register(fl *pflag.FlagSet, use listenUse) {
	fl.StringSliceVar(&f.allow, "allow", []string{"127.0.0.0/8", "::1/128"}, "networks (CIDR, comma-separated) allowed to connect to any listener, the admin HTTP one included")
	fl.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil, "networks (CIDR, comma-separated) whose connections must start with a PROXY protocol header (v1 or v2) giving the client's address")
	fl.IntVar(&f.maxConns, "max-conns", listen.DefaultMaxConns, "connections open at once, all listeners together (the admin HTTP listener has its own 64); lowered to fit the open-file limit, with 256 to spare")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 10*time.Minute, "close "+use.idle+" idle this long")
	if use.noIdle != "" {
		fl.MarkDeprecated("idle-timeout", use.noIdle)
	}
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM) of "+use.tls+"; SIGHUP reads it again")
	fl.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM) of --tls-cert")
	fl.StringVar(&f.httpAddr, "http-addr", use.httpAddr, "admin HTTP listen address: "+use.http+"; empty disables")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", daemon.DefaultShutdownTimeout, "on SIGINT/SIGTERM, how long connections in progress get to finish before the daemon exits anyway (a second signal: at once)")
}

// check refuses values out of range.
func (f *listenFlags) check() error {
	return errors.Join(atLeast("max-conns", f.maxConns, 1),
		atLeast("idle-timeout", f.idleTimeout, time.Millisecond),
		atLeast("shutdown-timeout", f.shutdownTimeout, time.Millisecond))
}

// gate returns the connection gate of the daemon's listeners.
func (f *listenFlags) gate(log *slog.Logger, reg prometheus.Registerer) (*listen.Gate, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	allow, err := parsePrefixes("--allow", f.allow)
	if err != nil {
		return nil, err
	}
	proxies, err := parsePrefixes("--trusted-proxies", f.trustedProxies)
	if err != nil {
		return nil, err
	}
	g := listen.NewGate(listen.Config{Allow: allow, MaxConns: f.maxConns, MaxConnsPerIP: f.maxConnsPerIP,
		TrustedProxies: proxies, Logger: log})
	if reg != nil {
		g.Register(reg)
	}
	return g, nil
}

// tlsConfig loads the certificate; nil when none is configured.
func (f *listenFlags) tlsConfig() (*tls.Config, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if f.tlsCert == "" {
		return nil, nil
	}
	cert, err := listen.LoadCertificate(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	f.cert = cert
	return cert.Config(), nil
}

// reloadOn makes SIGHUP to d reload the certificate files, if any: a
// renewed certificate reaches new connections without a restart.
func (f *listenFlags) reloadOn(d *daemon.Daemon) {
	if f.cert != nil {
		d.OnReload("tls certificate", f.cert.Reload)
	}
}

// serveAdmin opens the admin HTTP listener, when configured, and adds it
// to d. It is not behind the gate, so /healthz answers even when every
// other connection slot is taken, but only from allowed networks.
func (f *listenFlags) serveAdmin(d *daemon.Daemon, log *slog.Logger, reg *prometheus.Registry, opts adminhttp.Options) error {
	if f.httpAddr == "" {
		return nil
	}
	allow, err := parsePrefixes("--allow", f.allow)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	admin := listen.NewGate(listen.Config{Allow: allow, MaxConns: adminConns, Logger: log})
	h := adminhttp.Handler(reg, opts)
	d.Serve("http", admin.Wrap(ln, listen.Options{Refusal: []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")}),
		func(ctx context.Context, ln net.Listener) error { return adminhttp.Serve(ctx, ln, h, log) })
	return nil
}

// adminConns caps the admin HTTP listener's own connections.
const adminConns = 64
