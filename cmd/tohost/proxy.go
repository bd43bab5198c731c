package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/tohost/tohost/adminhttp"
	"github.com/tohost/tohost/internal/daemon"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/internal/penalty"
	"github.com/tohost/tohost/proxy"
)

// proxyListener is one of the proxy's listener flags.
type proxyListener struct {
	flag     string
	proto    proxy.Protocol
	implicit bool   // implicit TLS
	dflt     string // where it listens when no listener flag is given ("": off)
	addr     string
}

type proxyFlags struct {
	dir       dirClientFlags
	listen    listenFlags
	log       logFlags
	listeners []*proxyListener

	defaultBackend   string
	backendPorts     [4]int
	backendTLS       string
	backendTLSCA     string
	backendInsecure  bool
	backendProxyProt bool
	forwardIP        bool
	requireTLS       bool
	maxConnsPerIP    int
	loginTimeout     time.Duration
	maxLoginFailures int
	hostname         string
	dirConns         int
	backendSMTPProto string
	maxMessageSize   int64
	maxRecipients    int
	smtpTimeout      time.Duration
}

func init() { root.AddCommand(newProxyCmd()) }

func newProxyCmd() *cobra.Command {
	f := proxyFlags{listeners: []*proxyListener{
		{flag: "imap-addr", proto: proxy.IMAP, dflt: "127.0.0.1:1143"},
		{flag: "imaps-addr", proto: proxy.IMAP, implicit: true},
		{flag: "pop3-addr", proto: proxy.POP3, dflt: "127.0.0.1:1110"},
		{flag: "pop3s-addr", proto: proxy.POP3, implicit: true},
		{flag: "submission-addr", proto: proxy.Submission, dflt: "127.0.0.1:1587"},
		{flag: "submissions-addr", proto: proxy.Submission, implicit: true},
		{flag: "smtp-addr", proto: proxy.SMTP},
	}}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the front-end proxy: IMAP, POP3 and SMTP logins routed to each user's backend",
		Long: `proxy logs clients in against the directory (one "check" per login) and carries
each session to the backend named by the user's tohost field (or --default-backend,
which may list several backends sharing one mail directory), then relays bytes both ways. Incoming mail on --smtp-addr is routed per recipient.
Each listener is off unless given; with none given, IMAP, POP3 and submission listen
on unprivileged loopback ports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runProxy(cmd, f) },
	}
	fl := cmd.Flags()
	f.dir.register(fl, true)
	f.listen.register(fl, listenUse{httpAddr: "127.0.0.1:4081",
		http: "/metrics, /healthz, /readyz, /debug/pprof",
		tls:  "the proxy, as clients see it: implicit TLS on --imaps-addr, --pop3s-addr and --submissions-addr, STARTTLS (POP3: STLS) on --imap-addr, --pop3-addr, --submission-addr and --smtp-addr",
		noIdle: "the proxy has no idle timeout of its own: --login-timeout bounds the login, --smtp-timeout SMTP transactions, " +
			"and a relayed session lasts as long as its backend keeps it"})
	f.log.register(fl)
	for _, l := range f.listeners {
		fl.StringVar(&l.addr, l.flag, "", fmt.Sprintf("%s listen address%s (off unless given)", l.proto, map[bool]string{true: ", implicit TLS"}[l.implicit]))
	}
	fl.StringVar(&f.defaultBackend, "default-backend", "", "backend of users without a tohost field (host or host:port); several, comma-separated, share one mail directory (tohost backend --shared-mail-dir): each user goes to one chosen by a hash of the name, the next when it cannot be reached; none: their logins fail temporarily")
	for p, name := range []string{"imap", "pop3", "submission", "smtp"} {
		help := fmt.Sprintf("backend %s port when tohost has none (tohost=\"host:port\" overrides)", strings.ToUpper(name))
		if name == "smtp" {
			help = "backend port for incoming mail (LMTP, or SMTP with --backend-smtp-protocol smtp) when tohost has none (tohost=\"host:port\" overrides)"
		}
		fl.IntVar(&f.backendPorts[p], "backend-"+name+"-port", proxy.DefaultPorts[p], help)
	}
	fl.StringVar(&f.backendTLS, "backend-tls", "none", "TLS to backends: none, starttls or tls")
	fl.StringVar(&f.backendTLSCA, "backend-tls-ca", "", "PEM file of the CA(s) the backends' certificates are verified against (default: the system's)")
	fl.BoolVar(&f.backendInsecure, "backend-tls-insecure", false, "do not verify the backends' certificates")
	fl.BoolVar(&f.backendProxyProt, "backend-proxy-protocol", false, "send backends a PROXY v2 header with the client's address")
	fl.BoolVar(&f.forwardIP, "backend-forward-ip", false, "pass the client's address the protocol's way: IMAP ID x-originating-ip, POP3 and SMTP XCLIENT")
	fl.BoolVar(&f.requireTLS, "require-tls", false, "refuse logins over connections without TLS")
	fl.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 50, "connections open at once from one client address (0: no cap)")
	fl.DurationVar(&f.loginTimeout, "login-timeout", time.Minute, "time a client has for each step before it is logged in")
	fl.IntVar(&f.maxLoginFailures, "max-login-failures", 3, "failed logins on one connection before it is closed")
	fl.StringVar(&f.hostname, "hostname", "", "name the proxy greets with (default: the host name)")
	fl.StringVar(&f.backendSMTPProto, "backend-smtp-protocol", "lmtp", "how incoming mail reaches backends: lmtp or smtp")
	fl.Int64Var(&f.maxMessageSize, "max-message-size", 64<<20, "largest message taken over SMTP, in bytes")
	fl.IntVar(&f.maxRecipients, "max-recipients", 100, "recipients of one SMTP transaction; more get 452")
	fl.DurationVar(&f.smtpTimeout, "smtp-timeout", 5*time.Minute, "how long an SMTP client or backend may be silent in a transaction")
	fl.IntVar(&f.dirConns, "directory-conns", 4, "connections to the directory, shared by every login and lookup (pipelined)")
	return cmd
}

func (f *proxyFlags) check() error {
	errs := []error{f.listen.check(),
		atLeast("max-conns-per-ip", f.maxConnsPerIP, 0),
		atLeast("login-timeout", f.loginTimeout, time.Millisecond),
		atLeast("max-login-failures", f.maxLoginFailures, 1),
		within("directory-conns", f.dirConns, 1, 1024),
		atLeast("max-message-size", int(min(f.maxMessageSize, 1<<40)), 1),
		within("max-recipients", f.maxRecipients, 1, 100_000),
		atLeast("smtp-timeout", f.smtpTimeout, time.Millisecond)}
	for p, name := range []string{"imap", "pop3", "submission", "smtp"} {
		errs = append(errs, within("backend-"+name+"-port", f.backendPorts[p], 1, 65535))
	}
	return errors.Join(errs...)
}

// proxyConfig turns the flags into the proxy's configuration (without the
// directory client and the listeners).
func (f *proxyFlags) proxyConfig(log *slog.Logger, clientTLS *tls.Config) (proxy.Config, error) {
	cfg := proxy.Config{
		DefaultBackend: f.defaultBackend, BackendProxyProtocol: f.backendProxyProt,
		ForwardClientIP: f.forwardIP, TLS: clientTLS, RequireTLS: f.requireTLS,
		LoginTimeout: f.loginTimeout, MaxLoginFailures: f.maxLoginFailures,
		DrainTimeout: f.listen.shutdownTimeout, Hostname: f.hostname, Logger: log,
		Penalty: penalty.New[netip.Addr](penalty.Config{}),
	}
	copy(cfg.Ports[:], f.backendPorts[:])
	cfg.SMTP = proxy.SMTPOptions{MaxMessageBytes: f.maxMessageSize, MaxRecipients: f.maxRecipients, IdleTimeout: f.smtpTimeout}
	switch f.backendSMTPProto {
	case "lmtp":
	case "smtp":
		cfg.SMTP.BackendSMTP = true
	default:
		return cfg, fmt.Errorf("--backend-smtp-protocol: %q is neither lmtp nor smtp", f.backendSMTPProto)
	}
	switch f.backendTLS {
	case "none":
		cfg.BackendTLS = proxy.BackendPlain
	case "starttls":
		cfg.BackendTLS = proxy.BackendStartTLS
	case "tls":
		cfg.BackendTLS = proxy.BackendTLSOnly
	default:
		return cfg, fmt.Errorf("--backend-tls: %q is not none, starttls or tls", f.backendTLS)
	}
	cfg.BackendTLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.backendInsecure}
	var err error
	if cfg.BackendTLSConfig.RootCAs, err = loadCAs("--backend-tls-ca", f.backendTLSCA); err != nil {
		return cfg, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if f.requireTLS && clientTLS == nil {
		return cfg, errors.New("--require-tls needs --tls-cert and --tls-key")
	}
	return cfg, nil
}

func runProxy(cmd *cobra.Command, f proxyFlags) error {
	ctx := cmd.Context()
	log, err := f.log.logger()
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	clientTLS, err := f.listen.tlsConfig()
	if err != nil {
		return err
	}
	cfg, err := f.proxyConfig(log, clientTLS)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f.listen.maxConnsPerIP = f.maxConnsPerIP
	gate, err := f.listen.gate(log, reg)
	if err != nil {
		return err
	}
	// Sessions get the drain time; the daemon's own deadline is a little
	// longer, so the proxy closes them itself before it.
	d := daemon.New("proxy", log, f.listen.shutdownTimeout+5*time.Second)
	f.listen.reloadOn(d)
	defer d.Abort()
	dir, err := f.dir.client(f.dirConns, log)
	if err != nil {
		return err
	}
	d.OnStop(dir.Close)
	f.dir.reloadOn(d, dir)
	cfg.Directory = dir
	cfg.Metrics = proxy.NewMetrics(reg)

	given := false
	for _, l := range f.listeners {
		given = given || l.addr != ""
	}
	var p *proxy.Proxy // made once every listener is open (it must know them)
	for _, l := range f.listeners {
		addr := l.addr
		if !given {
			addr = l.dflt
		}
		if addr == "" {
			continue
		}
		opt := listen.Options{Refusal: proxyRefusal(l.proto)}
		if l.implicit {
			if clientTLS == nil {
				return fmt.Errorf("--%s needs --tls-cert and --tls-key", l.flag)
			}
			opt.TLS = clientTLS
		}
		ln, err := gate.Listen(addr, opt)
		if err != nil {
			return fmt.Errorf("--%s: %w", l.flag, err)
		}
		proto := l.proto
		d.Serve(strings.TrimSuffix(l.flag, "-addr"), ln, func(ctx context.Context, ln net.Listener) error {
			return p.Serve(ctx, ln, proto)
		})
		cfg.Self = append(cfg.Self, ln.Addr().String())
	}
	if p, err = proxy.New(cfg); err != nil {
		return err
	}
	if err := f.listen.serveAdmin(d, log, reg, adminhttp.Options{}); err != nil {
		return err
	}
	if !given {
		log.Info("no listener flags: serving IMAP, POP3 and submission on loopback")
	}
	return d.Run(ctx)
}

// proxyRefusal is what a connection over the connection caps is told, in
// its protocol's words.
func proxyRefusal(p proxy.Protocol) []byte {
	switch p {
	case proxy.IMAP:
		return []byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
	case proxy.POP3:
		return []byte("-ERR [SYS/TEMP] Too many connections, try again later\r\n")
	}
	return []byte("421 4.7.0 Too many connections, try again later\r\n")
}
