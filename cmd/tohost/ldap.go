package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/pflag"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/ldap"
	"github.com/tohost/tohost/directory/password"
)

// ldapFlags configure the directory's LDAP front end.
type ldapFlags struct {
	addr              string
	ldapsAddr         string
	base              string
	anonymousRead     bool
	adminDN           string
	adminPassword     string
	adminPasswordFile string
}

func (f *ldapFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.addr, "ldap-addr", "127.0.0.1:3389", "LDAP listen address (StartTLS with --tls-cert); empty disables")
	fl.StringVar(&f.ldapsAddr, "ldaps-addr", "", "LDAPS listen address (needs --tls-cert/--tls-key)")
	fl.StringVar(&f.base, "ldap-base", "dc=tohost", "LDAP naming context; users are uid=<name>,ou=users,<base>")
	fl.BoolVar(&f.anonymousRead, "ldap-anonymous-read", false, "let anonymous and bound clients read every user (userPassword excepted)")
	fl.StringVar(&f.adminDN, "ldap-admin-dn", "", "the LDAP admin's DN (default cn=admin,<base>)")
	fl.StringVar(&f.adminPassword, "ldap-admin-password", "", "the LDAP admin's password (prefer --ldap-admin-password-file); none: no admin")
	fl.StringVar(&f.adminPasswordFile, "ldap-admin-password-file", "", "file holding the LDAP admin's password")
}

// listeners opens the configured LDAP listeners and returns a function
// serving them all until ctx is done (nil when LDAP is off).
func (f *ldapFlags) listeners(svc *directory.Service, scheme password.Scheme, tlsCfg *tls.Config, log *slog.Logger, metrics *ldap.Metrics) (func(context.Context) error, error) {
	if f.addr == "" && f.ldapsAddr == "" {
		return nil, nil
	}
	if f.ldapsAddr != "" && tlsCfg == nil {
		return nil, fmt.Errorf("--ldaps-addr needs --tls-cert and --tls-key")
	}
	cfg := ldap.Config{Base: f.base, AdminDN: f.adminDN, AdminPassword: f.adminPassword,
		AnonymousRead: f.anonymousRead, TLS: tlsCfg, Scheme: scheme, Logger: log, Metrics: metrics}
	if err := readSecretFile("--ldap-admin-password-file", f.adminPasswordFile, &cfg.AdminPassword); err != nil {
		return nil, err
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	if f.addr != "" {
		ln, err := net.Listen("tcp", f.addr)
		if err != nil {
			return nil, fmt.Errorf("--ldap-addr: %w", err)
		}
		lns = append(lns, ln)
	}
	if f.ldapsAddr != "" {
		ln, err := net.Listen("tcp", f.ldapsAddr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("--ldaps-addr: %w", err)
		}
		lns = append(lns, tls.NewListener(ln, tlsCfg))
	}
	srv := ldap.New(svc, cfg)
	return func(ctx context.Context) error {
		errs := make(chan error, len(lns))
		for _, ln := range lns {
			log.Info("ldap listening", "addr", ln.Addr().String())
			go func(ln net.Listener) { errs <- srv.Serve(ctx, ln) }(ln)
		}
		var first error
		for range lns {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}, nil
}
