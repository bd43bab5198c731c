package ldap

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"

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
	switch t.kind {
	case kindAdmin:
		if !s.adminPasswordOK(pass) {
			return gldap.ResultInvalidCredentials, ""
		}
		ss.admin, ss.dn = true, s.tree.adminDN
		return gldap.ResultSuccess, ""
	case kindUser:
		u, err := s.svc.Check(s.ctx, t.name, pass)
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
	if s.cfg.AdminPassword == "" {
		return false
	}
	a := sha256.Sum256([]byte(pass))
	b := sha256.Sum256([]byte(s.cfg.AdminPassword))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
