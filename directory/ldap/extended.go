package ldap

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// extended serves StartTLS, WhoAmI (RFC 4532) and Password Modify
// (RFC 3062); any other extended operation gets protocolError, as RFC 4511
// 4.12 asks for an unknown requestName.
func (s *Server) extended(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.ExtendedOperationMessage) {
	if unsupportedCritical(m.Controls, false) {
		resp := r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultUnavailableCriticalExtension))
		resp.SetDiagnosticMessage("unsupported critical control")
		s.reply(w, resp)
		return
	}
	switch m.Name {
	case gldap.ExtendedOperationStartTLS:
		s.startTLS(w, r)
	case gldap.ExtendedOperationWhoAmI:
		resp := r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultSuccess))
		if ss := sessionOf(r); ss.dn != "" {
			resp.SetResponseValue("dn:" + ss.dn)
		} else {
			resp.SetResponseValue("") // anonymous
		}
		s.reply(w, resp)
	case gldap.ExtendedOperationPasswordModify:
		code, msg, generated := s.passwordModify(r, m)
		resp := r.NewExtendedResponse(gldap.WithResponseCode(code))
		resp.SetDiagnosticMessage(msg)
		if generated != "" {
			// PasswdModifyResponseValue ::= SEQUENCE { genPasswd [0] OCTET STRING OPTIONAL }
			seq := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "PasswdModifyResponseValue")
			seq.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, generated, "genPasswd"))
			resp.SetResponseValue(string(seq.Bytes()))
		}
		s.reply(w, resp)
	default:
		resp := r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultProtocolError))
		resp.SetDiagnosticMessage("unsupported extended operation " + string(m.Name))
		s.reply(w, resp)
	}
}

func (s *Server) startTLS(w *gldap.ResponseWriter, r *gldap.Request) {
	resp := r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultSuccess))
	resp.SetResponseName(gldap.ExtendedOperationStartTLS)
	switch {
	case s.cfg.TLS == nil:
		// RFC 4511 4.14.2: protocolError when TLS is not configured.
		resp.SetResultCode(gldap.ResultProtocolError)
		resp.SetDiagnosticMessage("StartTLS is not configured")
	case r.IsTLS():
		resp.SetResultCode(gldap.ResultOperationsError)
		resp.SetDiagnosticMessage("TLS is already established")
	}
	s.reply(w, resp)
	if s.cfg.TLS == nil || r.IsTLS() {
		return
	}
	if err := r.StartTLS(s.cfg.TLS); err != nil {
		// The connection is unusable now; its next read fails and
		// closes it.
		s.log.Warn("ldap StartTLS failed", "client", r.RemoteAddr().String(), "err", err)
	}
}

// passwordModify changes a password: a user their own, the admin anyone's.
// It returns the result code, a message, and the generated password when
// the request asked the server to choose one.
func (s *Server) passwordModify(r *gldap.Request, m *gldap.ExtendedOperationMessage) (int, string, string) {
	ss := sessionOf(r)
	if ss.anonymous() {
		return gldap.ResultUnwillingToPerform, "only authenticated users may change passwords", ""
	}
	var identity, oldPass, newPass string
	if m.HasValue {
		// PasswdModifyRequestValue ::= SEQUENCE { userIdentity [0],
		// oldPasswd [1], newPasswd [2] } (all OPTIONAL)
		p, err := ber.DecodePacketErr([]byte(m.Value))
		if err != nil || p.ClassType != ber.ClassUniversal || p.Tag != ber.TagSequence {
			return gldap.ResultProtocolError, "malformed Password Modify request", ""
		}
		for _, c := range p.Children {
			if c.ClassType != ber.ClassContext {
				return gldap.ResultProtocolError, "malformed Password Modify request", ""
			}
			switch c.Tag {
			case 0:
				identity = c.Data.String()
			case 1:
				oldPass = c.Data.String()
			case 2:
				newPass = c.Data.String()
			}
		}
	}
	name := ss.name
	if identity != "" {
		var ok bool
		if name, ok = s.identityName(identity); !ok {
			return gldap.ResultNoSuchObject, "no such user", ""
		}
	}
	switch {
	case ss.reader:
		return gldap.ResultInsufficientAccessRights, "a read-only account changes no password", ""
	case name == "" && ss.admin:
		return gldap.ResultUnwillingToPerform, "the admin's password is configured, not stored", ""
	case !ss.admin && normalized(name) != ss.name:
		return gldap.ResultInsufficientAccessRights, "users may change only their own password", ""
	}
	// checked is the stored hash a user's old password was verified
	// against: the change is written only if it is still the stored one.
	var checked string
	if oldPass != "" && !ss.admin {
		var code int
		var msg string
		if checked, code, msg = s.checkOldPassword(r, name, oldPass); code != gldap.ResultSuccess {
			return code, msg, ""
		}
	}
	if _, err := s.svc.Lookup(s.ctx, name); err != nil {
		var in *directory.InputError
		if errors.As(err, &in) {
			return gldap.ResultNoSuchObject, "no such user", ""
		}
		code, msg := s.failure("passwd", r, err)
		return code, msg, ""
	}
	var generated string
	if newPass == "" {
		generated = generatePassword()
		newPass = generated
	}
	// Always hashed here: the new password is cleartext by definition,
	// even if it looks like "{SCHEME}..." (Service.Set would store that
	// as a hash). Hashing, like verifying, is done before the write's
	// transaction, which only compares and stores.
	hash, err := s.svc.HashPassword(s.clientCtx(r), newPass)
	if errors.Is(err, directory.ErrBusy) {
		return gldap.ResultBusy, "directory busy, try again", ""
	}
	if err != nil {
		return gldap.ResultConstraintViolation, "password cannot be stored: " + err.Error(), ""
	}
	for attempt := 1; ; attempt++ {
		_, err = s.svc.Modify(s.ctx, name, func(u *directory.User) error {
			if checked != "" && u.Password != checked {
				return errPasswordChanged
			}
			u.Password = hash
			return nil
		})
		if !errors.Is(err, errPasswordChanged) {
			break
		}
		// Changed since the old password was verified: verify it
		// against the password now stored, as a request after that
		// change would have been.
		if attempt == maxPasswordAttempts {
			return gldap.ResultBusy, "the password is being changed; try again", ""
		}
		var code int
		var msg string
		if checked, code, msg = s.checkOldPassword(r, name, oldPass); code != gldap.ResultSuccess {
			return code, msg, ""
		}
	}
	if err != nil {
		if errors.Is(err, directory.ErrNotFound) { // deleted since the lookup: stays so
			return gldap.ResultNoSuchObject, "no such user", ""
		}
		code, msg := s.failure("passwd", r, err)
		return code, msg, ""
	}
	s.audit(r, "passwd", normalized(name), "")
	return gldap.ResultSuccess, "", generated
}

// errPasswordChanged refuses a Password Modify whose old password was
// verified against a password that another change has replaced since.
var errPasswordChanged = errors.New("password changed since it was verified")

// maxPasswordAttempts bounds how often a Password Modify verifies the old
// password again when the password keeps changing under it.
const maxPasswordAttempts = 3

// checkOldPassword verifies a user's old password and returns the stored
// hash it was verified against, or the result code and message refusing
// the request.
func (s *Server) checkOldPassword(r *gldap.Request, name, oldPass string) (string, int, string) {
	u, err := s.svc.Check(s.clientCtx(r), name, oldPass)
	if err != nil {
		if errors.Is(err, directory.ErrBadCredentials) {
			return "", gldap.ResultInvalidCredentials, "old password wrong"
		}
		code, msg := s.failure("passwd", r, err)
		return "", code, msg
	}
	return u.Password, gldap.ResultSuccess, ""
}

// identityName reads a Password Modify userIdentity: a user DN, an authzId
// ("dn:<DN>" or "u:<name>"), or a bare user name. Names may hold '=' and
// ',', so an identity that reads as a DN but names no user of the tree
// is taken as a bare name; only "dn:" insists on a DN.
func (s *Server) identityName(id string) (string, bool) {
	dn := false
	switch {
	case strings.HasPrefix(id, "u:"):
		return id[2:], id != "u:"
	case strings.HasPrefix(id, "dn:"):
		id, dn = id[3:], true
	case !strings.Contains(id, "="):
		return id, true
	}
	t, err := s.tree.resolve(id)
	switch {
	case err == nil && t.kind == kindUser:
		return t.name, true
	case dn || err == nil && t.kind != kindOutside:
		return "", false // a DN in the tree that is no user
	}
	return id, true
}

// generatePassword returns 16 random characters (96 bits).
func generatePassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
