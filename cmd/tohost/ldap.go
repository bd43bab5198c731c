package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/ldap"
	"github.com/tohost/tohost/internal/daemon"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/internal/penalty"
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
	readerDNs         []string
	readerFiles       []string
	penalty           *penalty.Penalty[string] // shared with TCPAuth; set by the directory, not a flag
	sizeLimit         int
	timeLimit         time.Duration
}

func (f *ldapFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.addr, "ldap-addr", "127.0.0.1:3389", "LDAP listen address (StartTLS with --tls-cert); empty disables")
	fl.StringVar(&f.ldapsAddr, "ldaps-addr", "", "LDAPS listen address (needs --tls-cert/--tls-key)")
	fl.StringVar(&f.base, "ldap-base", "dc=tohost", "LDAP naming context; users are uid=<name>,ou=users,<base>")
	fl.BoolVar(&f.anonymousRead, "ldap-anonymous-read", false, "let anonymous and bound clients read every user (userPassword excepted)")
	fl.StringVar(&f.adminDN, "ldap-admin-dn", "", "the LDAP admin's DN (default cn=admin,<base>)")
	fl.StringVar(&f.adminPassword, "ldap-admin-password", "", "the LDAP admin's password (prefer --ldap-admin-password-file); none: no admin")
	fl.StringVar(&f.adminPasswordFile, "ldap-admin-password-file", "", "file holding the LDAP admin's password (the trailing line ending dropped); SIGHUP reads it again")
	fl.StringArrayVar(&f.readerDNs, "ldap-reader-dn", nil, "DN of a read-only account (mail servers' lookups): reads every user but userPassword, writes nothing; repeat for more, each with its --ldap-reader-password-file")
	fl.StringArrayVar(&f.readerFiles, "ldap-reader-password-file", nil, "file holding the password of the --ldap-reader-dn in the same position; SIGHUP reads it again")
	fl.IntVar(&f.sizeLimit, "ldap-size-limit", ldap.DefaultSizeLimit, "entries one LDAP search returns (a paged search: per page); the admin is exempt; 0: no limit")
	fl.DurationVar(&f.timeLimit, "ldap-time-limit", ldap.DefaultTimeLimit, "how long one LDAP search may run; the admin is exempt; 0: no limit")
}

// serve opens the configured LDAP listeners behind gate and adds them to
// d (none when LDAP is off).
func (f *ldapFlags) serve(d *daemon.Daemon, gate *listen.Gate, svc *directory.Service,
	tlsCfg *tls.Config, idle time.Duration, log *slog.Logger, metrics *ldap.Metrics) error {
	if f.addr == "" && f.ldapsAddr == "" {
		return nil
	}
	if f.ldapsAddr != "" && tlsCfg == nil {
		return fmt.Errorf("--ldaps-addr needs --tls-cert and --tls-key")
	}
	if f.sizeLimit < 0 || f.timeLimit < 0 {
		return fmt.Errorf("--ldap-size-limit and --ldap-time-limit must not be negative (0: no limit)")
	}
	cfg := ldap.Config{Base: f.base, AdminDN: f.adminDN, AdminPassword: f.adminPassword,
		AnonymousRead: f.anonymousRead, TLS: tlsCfg, Logger: log, Metrics: metrics,
		IdleTimeout: idle, Penalty: f.penalty, SizeLimit: noneIfZero(f.sizeLimit), TimeLimit: noneIfZero(f.timeLimit)}
	admin, readers, err := f.passwords()
	if err != nil {
		return err
	}
	cfg.AdminPassword = admin
	for i, dn := range f.readerDNs {
		cfg.Readers = append(cfg.Readers, ldap.Reader{DN: dn, Password: readers[i]})
	}
	srv := ldap.New(svc, cfg)
	d.OnReload("ldap passwords", func() error {
		admin, readers, err := f.passwords()
		if err != nil {
			return err
		}
		return srv.SetPasswords(admin, readers)
	})
	if f.addr != "" {
		ln, err := gate.Listen(f.addr, listen.Options{Refusal: ldap.Refusal})
		if err != nil {
			return fmt.Errorf("--ldap-addr: %w", err)
		}
		d.Serve("ldap", ln, srv.Serve)
	}
	if f.ldapsAddr != "" {
		ln, err := gate.Listen(f.ldapsAddr, listen.Options{TLS: tlsCfg, Refusal: ldap.Refusal})
		if err != nil {
			return fmt.Errorf("--ldaps-addr: %w", err)
		}
		d.Serve("ldaps", ln, srv.Serve)
	}
	return nil
}

// noneIfZero maps a flag's 0 ("no limit", as ldapsearch -z 0) to the
// negative value that means none in ldap.Config, where 0 is the default.
func noneIfZero[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// passwords reads the admin's password (the flag, or its file) and each
// reader's password file, in --ldap-reader-dn's order.
func (f *ldapFlags) passwords() (admin string, readers []string, err error) {
	admin = f.adminPassword
	if err := readSecretFile("--ldap-admin-password-file", f.adminPasswordFile, &admin); err != nil {
		return "", nil, err
	}
	if len(f.readerDNs) != len(f.readerFiles) {
		return "", nil, fmt.Errorf("--ldap-reader-dn given %d times, --ldap-reader-password-file %d: one file per reader", len(f.readerDNs), len(f.readerFiles))
	}
	readers = make([]string, len(f.readerFiles))
	for i, file := range f.readerFiles {
		if err := readSecretFile("--ldap-reader-password-file", file, &readers[i]); err != nil {
			return "", nil, err
		}
		if readers[i] == "" {
			return "", nil, fmt.Errorf("--ldap-reader-password-file %s is empty", file)
		}
	}
	return admin, readers, nil
}
