package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tohost/tohost/internal/daemon"
	"github.com/tohost/tohost/protocol/authent"
)

// dirClientFlags are the flags of a command that talks to a directory
// over TCP: `authent` and `user`.
type dirClientFlags struct {
	directory   string
	secret      string
	secretFile  string
	timeout     time.Duration
	tls         bool
	tlsCA       string
	tlsInsecure bool
}

// register adds the flags; a daemon (reloads) reads --secret-file again
// on SIGHUP, a one-shot command does not.
func (f *dirClientFlags) register(fs *pflag.FlagSet, reloads bool) {
	secretFile := "file holding the directory's shared secret (the trailing line ending dropped)"
	if reloads {
		secretFile += "; SIGHUP reads it again for new connections"
	}
	fs.StringVar(&f.directory, "directory", "127.0.0.1:4020", "directory address(es), host:port, comma-separated, in failover order")
	fs.StringVar(&f.secret, "secret", "", "the directory's shared secret (its --secret), sent as \"auth <secret>\" first on each new connection (prefer --secret-file)")
	fs.StringVar(&f.secretFile, "secret-file", "", secretFile)
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "limit of one request to the directory")
	fs.BoolVar(&f.tls, "tls", false, "connect to the directory with TLS (the directory's --tls-cert)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of the CA(s) the directory's certificate is verified against (default: the system's; implies --tls)")
	fs.BoolVar(&f.tlsInsecure, "tls-insecure", false, "do not verify the directory's certificate (implies --tls)")
}

func (f *dirClientFlags) useTLS() bool { return f.tls || f.tlsCA != "" || f.tlsInsecure }

// loadCAs reads the CA certificates a TLS client trusts from path (PEM);
// nil, the system's, when path is empty.
func loadCAs(flag, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", flag, path)
	}
	return pool, nil
}

// reloadOn makes SIGHUP to d read --secret-file again for the new
// connections of c (a secret being rotated on the directory).
func (f *dirClientFlags) reloadOn(d *daemon.Daemon, c *authent.Client) {
	if f.secretFile == "" {
		return
	}
	d.OnReload("--secret-file", func() error {
		var secret string
		if err := readSecretFile("--secret-file", f.secretFile, &secret); err != nil {
			return err
		}
		return c.SetSecret(secret)
	})
}

// client builds a client from the flags.
func (f *dirClientFlags) client(conns int, log *slog.Logger) (*authent.Client, error) {
	if err := atLeast("timeout", f.timeout, time.Millisecond); err != nil {
		return nil, err
	}
	var addrs []string
	for _, a := range strings.Split(f.directory, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	cfg := authent.ClientConfig{
		Addrs:   addrs,
		Conns:   conns,
		Timeout: f.timeout,
		Secret:  f.secret,
		Logger:  log,
	}
	if err := readSecretFile("--secret-file", f.secretFile, &cfg.Secret); err != nil {
		return nil, err
	}
	if f.useTLS() {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.tlsInsecure}
		var err error
		if cfg.TLS.RootCAs, err = loadCAs("--tls-ca", f.tlsCA); err != nil {
			return nil, err
		}
	}
	return authent.NewClient(cfg)
}

func newAuthentCmd() *cobra.Command {
	var flags dirClientFlags
	var logs logFlags
	cmd := &cobra.Command{
		Use:   "authent",
		Short: "Run as a NetWin authent module (g_authent_process) on stdin/stdout, forwarding to a tohost directory",
		Long: `authent speaks the NetWin authent protocol on stdin/stdout with LF line endings,
so that SurgeMail or DMail can run it as their authent module. Every request is
forwarded to a tohost directory over TCP, failing over between the --directory
addresses; when none answers the request gets -DEAD and the module keeps serving.
Logs go to stderr only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger()
			if err != nil {
				return err
			}
			// One request at a time comes from the mail server: one
			// connection is enough, a second one takes over at once if
			// the first breaks.
			c, err := flags.client(2, log)
			if err != nil {
				return err
			}
			defer c.Close()
			log.Info("authent module started", "directory", flags.directory, "tls", flags.useTLS())
			err = authent.Relay(cmd.Context(), os.Stdin, os.Stdout, c)
			if errors.Is(err, context.Canceled) {
				err = nil
			}
			log.Info("authent module stopped")
			return err
		},
	}
	flags.register(cmd.Flags(), false)
	logs.register(cmd.Flags())
	return cmd
}

func init() { root.AddCommand(newAuthentCmd()) }
