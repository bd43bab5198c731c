package ldap

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// bind authenticates the connection: anonymously, as a user (uid=<name> or
// mail=<name> under ou=users), checked by Service.Check exactly like the
// TCPAuth `check` (same password code, same verification cache), or as the
// admin. Unknown users and wrong passwords get the same invalidCredentials.
func (s *Server) bind(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.SimpleBindMessage) {
	ss := sessionOf(r)
	// RFC 4511 4.2.1: a bind first makes the connection anonymous, and a
	// failed one leaves it so.
	*ss = session{}
	code, msg := s.authenticate(r, m, ss)
	resp := r.NewBindResponse(gldap.WithResponseCode(code))
	resp.SetDiagnosticMessage(msg)
	s.reply(w, resp)
}

func (s *Server) authenticate(r *gldap.Request, m *gldap.SimpleBindMessage, ss *session) (int, string) {
	switch {
	case m.Version != 3:
		return gldap.ResultProtocolError, "only LDAPv3 is supported"
	case m.AuthChoice != gldap.SimpleAuthChoice:
		return gldap.ResultAuthMethodNotSupported, "SASL is not supported; use a simple bind"
	case unsupportedCritical(m.Controls, false):
		return gldap.ResultUnavailableCriticalExtension, "unsupported critical control"
	}
	pass := string(m.Password)
	switch {
	case m.UserName == "" && pass == "":
		return gldap.ResultSuccess, "" // anonymous
	case m.UserName == "":
		return gldap.ResultInvalidCredentials, ""
	case pass == "":
		// RFC 4513 5.1.2: an "unauthenticated" bind (a name, no
		// password) must not pass for an authenticated one.
		return gldap.ResultUnwillingToPerform, "unauthenticated bind (DN without password) is not allowed"
	}
	t, err := s.tree.resolve(m.UserName)
	if err != nil {
		return gldap.ResultInvalidDNSyntax, "invalid DN"
	}
	if t.kind != kindAdmin && t.kind != kindUser && t.kind != kindReader {
		return gldap.ResultInvalidCredentials, ""
	}
	client, name, key := s.penaltyKey(r, t)
	// After a failure the next bind of that name from that client waits
	// out its delay first. LDAP answers each request by its message ID
	// and a client waits for its bind anyway, so the wait holds up
	// nobody else; the right password afterwards still succeeds.
	if s.cfg.Penalty.Wait(s.ctx, key) != nil {
		return gldap.ResultUnavailable, "server stopping"
	}
	code, msg := s.verify(r, t, pass, ss)
	switch code {
	case gldap.ResultSuccess:
		s.cfg.Penalty.Succeeded(key)
	case gldap.ResultInvalidCredentials:
		s.failedBind(key, client, name)
	}
	return code, msg
}

// clientCtx is the server's context naming r's client, whose hashes then
// wait in the hash pool's queue of that address, as TCPAuth's do.
func (s *Server) clientCtx(r *gldap.Request) context.Context {
	return directory.WithClient(s.ctx, clientAddr(r))
}

// clientAddr is r's client address, without the port.
func clientAddr(r *gldap.Request) string {
	client := r.RemoteAddr().String()
	if ap, err := netip.ParseAddrPort(client); err == nil {
		return ap.Addr().Unmap().String()
	}
	return client
}

// penaltyKey is what failed binds are counted by: the client's address
// and the name bound as. The name is part of it because a mail server
// that checks its users' passwords by binding as them is one address:
// one user's typos must not refuse the others.
func (s *Server) penaltyKey(r *gldap.Request, t target) (client, name, key string) {
	client = clientAddr(r)
	name = t.name // a user's name, or a reader's DN
	if t.kind == kindAdmin {
		name = s.tree.adminDN
	}
	return client, name, client + " " + strings.ToLower(name)
}

// failedBind counts a failed bind and logs it once per burst: at the 1st,
// 2nd, 4th, 8th... failure in a row, each line with the count.
func (s *Server) failedBind(key, client, name string) {
	n := s.cfg.Penalty.Failed(key)
	if n&(n-1) != 0 {
		return
	}
	s.log.Warn("ldap bind failed", "client", client, "dn", name, "failures", n)
}

// verify checks a simple bind's password for the admin or a user and
// sets up the session when it is right.
func (s *Server) verify(r *gldap.Request, t target, pass string, ss *session) (int, string) {
	switch t.kind {
	case kindAdmin:
		if !s.adminPasswordOK(pass) {
			return gldap.ResultInvalidCredentials, ""
		}
		ss.admin, ss.dn = true, s.tree.adminDN
		return gldap.ResultSuccess, ""
	case kindReader:
		if !equalSecret(pass, s.creds.Load().readers[t.name]) {
			return gldap.ResultInvalidCredentials, ""
		}
		ss.reader, ss.dn = true, t.name
		return gldap.ResultSuccess, ""
	case kindUser:
		u, err := s.svc.Check(s.clientCtx(r), t.name, pass)
		if err != nil {
			var in *directory.InputError
			isInput := errors.As(err, &in) // a name no user can have
			if errors.Is(err, directory.ErrBadCredentials) || isInput {
				if err != directory.ErrBadCredentials && !isInput {
					// A stored hash that cannot be read: the admin must know.
					s.log.Error("ldap bind refused", "user", t.name, "err", err)
				}
				return gldap.ResultInvalidCredentials, ""
			}
			code, msg := s.failure("bind", r, err)
			return code, msg
		}
		ss.name, ss.dn = u.Name, s.tree.userDN(u.Display)
		return gldap.ResultSuccess, ""
	}
	return gldap.ResultInvalidCredentials, ""
}

// adminPasswordOK compares in constant time (of the hashes, so the length
// of the password does not show either).
func (s *Server) adminPasswordOK(pass string) bool {
	return equalSecret(pass, s.creds.Load().admin)
}

// equalSecret compares a bind's password with a configured one in
// constant time (of their hashes, so the length does not show either). An
// empty configured password matches nothing: that account is off.
func equalSecret(pass, want string) bool {
	if want == "" {
		return false
	}
	a := sha256.Sum256([]byte(pass))
	b := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// credentials are the configured passwords: the admin's and each read-only
// account's by its DN. SetPasswords replaces them as one.
type credentials struct {
	admin   string
	readers map[string]string
}

// SetPasswords replaces the admin's password and the read-only accounts'
// (in Config.Readers' order), as a SIGHUP reload of their files does.
// Connections already bound keep their rights.
func (s *Server) SetPasswords(admin string, readers []string) error {
	if len(readers) != len(s.tree.readerOf) {
		return fmt.Errorf("%d reader passwords for %d readers", len(readers), len(s.tree.readerOf))
	}
	c := &credentials{admin: admin, readers: map[string]string{}}
	for i, r := range s.tree.readerOf {
		if readers[i] == "" {
			return fmt.Errorf("reader %s: empty password", r.name)
		}
		c.readers[r.name] = readers[i]
	}
	s.creds.Store(c)
	return nil
}
