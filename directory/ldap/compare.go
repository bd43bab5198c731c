package ldap

import (
	"errors"

	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// compare answers whether an entry has an attribute value, for whoever may
// read the entry. userPassword is never compared: that would let anyone
// who can read an entry test passwords without the bind's accounting.
func (s *Server) compare(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.CompareMessage) {
	reply := func(code int, msg, matched string) {
		resp := r.NewCompareResponse(code, msg)
		resp.SetMatchedDN(matched)
		s.reply(w, resp)
	}
	ss := sessionOf(r)
	if unsupportedCritical(m.Controls, false) {
		reply(gldap.ResultUnavailableCriticalExtension, "unsupported critical control", "")
		return
	}
	key := attrKey(m.AttributeDesc)
	if key == "userpassword" {
		reply(gldap.ResultInsufficientAccessRights, "userPassword cannot be compared; bind instead", "")
		return
	}
	t, err := s.tree.resolve(m.DN)
	if err != nil {
		reply(gldap.ResultInvalidDNSyntax, "invalid DN", "")
		return
	}
	var e entry
	switch t.kind {
	case kindRoot:
		e = s.root
	case kindBase, kindUsers:
		if ss.anonymous() && !s.cfg.AnonymousRead {
			reply(gldap.ResultInsufficientAccessRights, "bind first", "")
			return
		}
		e = s.base
		if t.kind == kindUsers {
			e = s.users
		}
	case kindUser:
		if !s.readsAll(ss) && normalized(t.name) != ss.name {
			reply(gldap.ResultInsufficientAccessRights, "", "")
			return
		}
		u, err := s.svc.Lookup(s.ctx, t.name)
		var in *directory.InputError
		if errors.Is(err, directory.ErrNotFound) || errors.As(err, &in) {
			reply(gldap.ResultNoSuchObject, "", s.tree.usersDN)
			return
		}
		if err != nil {
			code, msg := s.failure("compare", r, err)
			reply(code, msg, "")
			return
		}
		e = userEntry{t: &s.tree, u: u}
	default:
		reply(gldap.ResultNoSuchObject, "", t.matched)
		return
	}
	f := &filter{op: opEquality, key: key}
	f.value = f.fold(m.AssertionValue)
	switch {
	case len(e.values(key)) == 0:
		reply(gldap.ResultNoSuchAttribute, "", "")
	case f.eval(e) == resTrue:
		reply(gldap.ResultCompareTrue, "", "")
	default:
		reply(gldap.ResultCompareFalse, "", "")
	}
}
