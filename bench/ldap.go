package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAP modes of RunLDAP, against a directory's LDAP port (tohost directory
// --ldap-addr), on persistent connections.
const (
	// ModeLDAPSearch searches ou=users,<base> for (uid=<login>) with an
	// anonymous session (the directory needs --ldap-anonymous-read) and
	// expects exactly that user's entry (with VerifyHost, also its
	// mailHost), or no entry for a miss (an unknown user).
	ModeLDAPSearch = "ldap-search"
	// ModeLDAPBind binds as uid=<login>,ou=users,<base> with the user's
	// password and expects success, or invalidCredentials for a miss (a
	// wrong password).
	ModeLDAPBind = "ldap-bind"
)

// DefaultLDAPBase is the directory's default LDAP suffix.
const DefaultLDAPBase = "dc=tohost"

// RunLDAP runs cfg.Conns clients against the LDAP server at cfg.Addr, each
// on one connection, making ldap-search or ldap-bind requests one after
// another. cfg.LDAPBase is the suffix (default dc=tohost).
func RunLDAP(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Mode != ModeLDAPSearch && cfg.Mode != ModeLDAPBind {
		return Result{}, fmt.Errorf("bench: unknown LDAP mode %q", cfg.Mode)
	}
	base := cfg.LDAPBase
	if base == "" {
		base = DefaultLDAPBase
	}
	users := "ou=users," + base
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	dial := func(ctx context.Context) (*ldap.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		c := ldap.NewConn(nc, false)
		c.Start()
		c.SetTimeout(timeout)
		return c, nil
	}
	closeConn := func(c *ldap.Conn) { c.Close() }
	if cfg.Mode == ModeLDAPBind {
		return runPersistent(ctx, cfg, dial, func(c *ldap.Conn, i int, miss bool) error {
			return ldapBind(c, users, i, miss)
		}, closeConn)
	}
	return runPersistent(ctx, cfg, dial, func(c *ldap.Conn, i int, miss bool) error {
		return ldapSearch(c, users, i, miss, cfg.VerifyHost)
	}, closeConn)
}

func ldapBind(c *ldap.Conn, users string, i int, miss bool) error {
	pass := Password(i)
	if miss {
		pass = "wrong-" + pass
	}
	err := c.Bind("uid="+Login(i)+","+users, pass)
	switch {
	case miss && err == nil:
		return errors.New("wrong password accepted")
	case miss && ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		return nil
	case err != nil:
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

func ldapSearch(c *ldap.Conn, users string, i int, miss, verifyHost bool) error {
	login := Login(i)
	if miss {
		login = MissLogin(i)
	}
	attrs := []string{"uid"}
	if verifyHost {
		attrs = append(attrs, "mailHost")
	}
	res, err := c.Search(ldap.NewSearchRequest(users, ldap.ScopeSingleLevel, ldap.NeverDerefAliases,
		2, 0, false, "(uid="+ldap.EscapeFilter(login)+")", attrs, nil))
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	switch {
	case miss && len(res.Entries) != 0:
		return fmt.Errorf("unknown user found: %s", res.Entries[0].DN)
	case miss:
		return nil
	case len(res.Entries) != 1:
		return fmt.Errorf("%d entries, want 1", len(res.Entries))
	}
	e := res.Entries[0]
	if got := e.GetAttributeValue("uid"); got != login {
		return fmt.Errorf("entry %s has uid %q", e.DN, got)
	}
	if verifyHost {
		if got := e.GetAttributeValue("mailHost"); got != ToHost(i) {
			return fmt.Errorf("entry %s has mailHost %q, want %q", e.DN, got, ToHost(i))
		}
	}
	return nil
}
