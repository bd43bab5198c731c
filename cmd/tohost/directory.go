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
	"golang.org/x/sync/errgroup"

	"github.com/tohost/tohost/adminhttp"
	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/ldap"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/tcpauth"
)

type directoryFlags struct {
	store           storeFlags
	ldap            ldapFlags
	tcpauthAddr     string
	httpAddr        string
	allow           []string
	adminAllow      []string
	secret          string
	secretFile      string
	tlsCert         string
	tlsKey          string
	idleTimeout     time.Duration
	maxConns        int
	passwordScheme  string
	verifyCacheSize int
	verifyCacheTTL  time.Duration
	logLevel        string
}

func init() { root.AddCommand(newDirectoryCmd()) }

func newDirectoryCmd() *cobra.Command {
	var f directoryFlags
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "Run the user directory (TCPAuth and LDAP) on the embedded store or Postgres+Redis",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDirectory(cmd.Context(), f)
		},
	}
	cmd.AddCommand(newMigrateCmd())
	fl := cmd.Flags()
	f.store.register(fl)
	f.ldap.register(fl)
	fl.StringVar(&f.tcpauthAddr, "tcpauth-addr", "127.0.0.1:4020", "TCPAuth listen address")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:4080", "admin HTTP listen address (/metrics, /healthz); empty disables")
	fl.StringSliceVar(&f.allow, "allow", []string{"127.0.0.0/8", "::1/128"}, "networks (CIDR) allowed to connect")
	fl.StringSliceVar(&f.adminAllow, "admin-allow", []string{"127.0.0.0/8", "::1/128"}, "networks (CIDR) allowed admin commands (set, del, search, rename)")
	fl.StringVar(&f.secret, "secret", "", "shared secret clients must send with `auth` first (prefer --secret-file)")
	fl.StringVar(&f.secretFile, "secret-file", "", "file holding the shared secret")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM) for the TCPAuth listener")
	fl.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 10*time.Minute, "close connections idle this long")
	fl.IntVar(&f.maxConns, "max-conns", 10000, "maximum concurrent TCPAuth connections")
	fl.StringVar(&f.passwordScheme, "password-scheme", "ARGON2ID", "scheme for new passwords: ARGON2ID, BLF-CRYPT, CRYPT (sha512-crypt), SSHA512, SSHA256, SSHA, ...")
	fl.IntVar(&f.verifyCacheSize, "verify-cache-size", 100000, "successful password checks remembered (0: default, -1: off)")
	fl.DurationVar(&f.verifyCacheTTL, "verify-cache-ttl", 2*time.Minute, "how long a successful password check is remembered")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runDirectory(ctx context.Context, f directoryFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := f.tcpauthConfig(log)
	if err != nil {
		return err
	}
	scheme, err := password.ParseScheme(f.passwordScheme)
	if err != nil {
		return fmt.Errorf("--password-scheme: %w", err)
	}
	reg := prometheus.NewRegistry()
	store, err := f.store.open(ctx, log, reg)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := directory.NewService(store, directory.Config{
		Scheme: scheme, VerifyCacheSize: f.verifyCacheSize, VerifyCacheTTL: f.verifyCacheTTL})

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(usersGauge(svc))
	cfg.Metrics = tcpauth.NewMetrics(reg)
	cfg.Version = version

	ln, err := net.Listen("tcp", f.tcpauthAddr)
	if err != nil {
		return fmt.Errorf("--tcpauth-addr: %w", err)
	}
	log.Info("directory started", "tcpauth", ln.Addr().String(), "store", store.kind, "version", version)
	serveLDAP, err := f.ldap.listeners(svc, scheme, cfg.TLS, log, ldap.NewMetrics(reg))
	if err != nil {
		ln.Close()
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return tcpauth.New(svc, cfg).Serve(ctx, ln) })
	if serveLDAP != nil {
		g.Go(func() error { return serveLDAP(ctx) })
	}
	g.Go(func() error { return store.run(ctx) })
	if f.httpAddr != "" {
		hln, err := net.Listen("tcp", f.httpAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--http-addr: %w", err)
		}
		g.Go(func() error { return adminhttp.Serve(ctx, hln, adminhttp.Handler(reg, store.health), log) })
	}
	err = g.Wait()
	log.Info("directory stopped")
	return err
}

// usersGauge reports the number of users at scrape time.
func usersGauge(svc *directory.Service) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tohost_directory_users", Help: "Users in the directory."},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := svc.Count(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
}

func (f directoryFlags) tcpauthConfig(log *slog.Logger) (tcpauth.Config, error) {
	cfg := tcpauth.Config{IdleTimeout: f.idleTimeout, MaxConns: f.maxConns, Logger: log, Secret: f.secret}
	err := errors.Join(atLeast("max-conns", f.maxConns, 1),
		atLeast("idle-timeout", f.idleTimeout, time.Millisecond),
		atLeast("verify-cache-size", f.verifyCacheSize, -1),
		atLeast("verify-cache-ttl", f.verifyCacheTTL, 0))
	if err != nil {
		return cfg, err
	}
	if cfg.Allow, err = parsePrefixes("--allow", f.allow); err != nil {
		return cfg, err
	}
	if cfg.AdminAllow, err = parsePrefixes("--admin-allow", f.adminAllow); err != nil {
		return cfg, err
	}
	if err := readSecretFile("--secret-file", f.secretFile, &cfg.Secret); err != nil {
		return cfg, err
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return cfg, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return cfg, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// parsePrefixes parses CIDRs; a bare address means just that host.
func parsePrefixes(flag string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a network (CIDR) or address", flag, s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
