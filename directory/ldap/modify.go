package ldap

import (
	"errors"
	"strconv"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
)

// Writes (Add, Modify, Delete, ModifyDN) are the admin's, and go through
// Service.Create, Modify, Delete and Rename, each decided in the store's
// own transaction.

// role is what writing an attribute of a user entry means.
type role int

const (
	roleField       role = iota // a directory field of the same name
	roleName                    // cn: the `name` field
	roleTohost                  // tohost, mailHost: the `tohost` field
	roleDerived                 // sn: computed from name, accepted and ignored
	roleUserName                // uid, mail: the name itself (ModifyDN changes it)
	rolePassword                // userPassword
	roleObjectClass             // fixed; accepted and ignored
	roleNoUserMod               // operational attributes
)

func roleOf(key string) role {
	switch key {
	case "cn", labelName:
		return roleName
	case "mailhost", directory.LabelTohost:
		return roleTohost
	case "sn":
		return roleDerived
	case "uid", "mail":
		return roleUserName
	case "userpassword":
		return rolePassword
	case "objectclass":
		return roleObjectClass
	}
	if operational[key] {
		return roleNoUserMod
	}
	return roleField
}

// writeError is a refused write: its result code and message.
type writeError struct {
	code int
	msg  string
}

func refuse(code int, msg string) *writeError { return &writeError{code, msg} }

// adminOnly answers a write from anyone but the admin.
func (s *Server) adminOnly(r *gldap.Request, controls []gldap.Control) *writeError {
	if !sessionOf(r).admin {
		return refuse(gldap.ResultInsufficientAccessRights, "only the admin may write")
	}
	if unsupportedCritical(controls, false) {
		return refuse(gldap.ResultUnavailableCriticalExtension, "unsupported critical control")
	}
	return nil
}

// userTarget resolves the DN of a write, which must name a user.
func (s *Server) userTarget(dn string) (string, *writeError) {
	t, err := s.tree.resolve(dn)
	if err != nil {
		return "", refuse(gldap.ResultInvalidDNSyntax, "invalid DN")
	}
	switch t.kind {
	case kindUser:
		return t.name, nil
	case kindBase, kindUsers, kindRoot:
		return "", refuse(gldap.ResultUnwillingToPerform, "the fixed entries cannot be changed")
	case kindMissing, kindOutside:
		return "", &writeError{gldap.ResultNoSuchObject, t.matched}
	}
	return "", refuse(gldap.ResultUnwillingToPerform, "the admin is configured, not stored")
}

func (s *Server) answer(w *gldap.ResponseWriter, r *gldap.Request, app int, we *writeError) {
	if we == nil {
		s.reply(w, r.NewResult(app, gldap.ResultSuccess, ""))
		return
	}
	resp := r.NewResult(app, we.code, we.msg)
	if we.code == gldap.ResultNoSuchObject {
		resp.SetDiagnosticMessage("")
		resp.SetMatchedDN(we.msg)
	}
	s.reply(w, resp)
}

// fail turns a directory error into a writeError.
func (s *Server) fail(op string, r *gldap.Request, err error) *writeError {
	code, msg := s.failure(op, r, err)
	if code == gldap.ResultNoSuchObject {
		msg = s.tree.usersDN // matched DN
	}
	return &writeError{code, msg}
}

func (s *Server) add(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.AddMessage) {
	s.answer(w, r, gldap.ApplicationAddResponse, s.addUser(r, m))
}

// addElsewhere answers an add of anything but a user: noSuchObject when
// the new entry's parent does not exist (RFC 4511 4.7, with the nearest
// entry that does as the matched DN), unwillingToPerform when it does.
func (s *Server) addElsewhere(r *gldap.Request, dn string) *writeError {
	unwilling := refuse(gldap.ResultUnwillingToPerform, "only users can be added, as uid=<name>,"+s.tree.usersDN)
	d, err := goldap.ParseDN(dn)
	if err != nil || len(d.RDNs) == 0 {
		return unwilling
	}
	parent := s.tree.resolveParsed(&goldap.DN{RDNs: d.RDNs[1:]})
	switch parent.kind {
	case kindRoot, kindBase, kindUsers:
		return unwilling
	case kindUser:
		_, err := s.svc.Lookup(s.ctx, parent.name)
		var in *directory.InputError
		switch {
		case err == nil:
			return refuse(gldap.ResultUnwillingToPerform, "a user entry has no entries under it")
		case !errors.Is(err, directory.ErrNotFound) && !errors.As(err, &in):
			return s.fail("add", r, err)
		}
		return &writeError{gldap.ResultNoSuchObject, s.tree.usersDN}
	}
	return &writeError{gldap.ResultNoSuchObject, parent.matched}
}

func (s *Server) addUser(r *gldap.Request, m *gldap.AddMessage) *writeError {
	if we := s.adminOnly(r, m.Controls); we != nil {
		return we
	}
	t, err := s.tree.resolve(m.DN)
	switch {
	case err != nil:
		return refuse(gldap.ResultInvalidDNSyntax, "invalid DN")
	case t.kind == kindBase || t.kind == kindUsers || t.kind == kindRoot:
		return refuse(gldap.ResultEntryAlreadyExists, "")
	case t.kind == kindOutside:
		return &writeError{gldap.ResultNoSuchObject, ""}
	case t.kind != kindUser:
		return s.addElsewhere(r, m.DN)
	}
	name := t.name
	if err := directory.ValidateName(name); err != nil {
		return refuse(gldap.ResultNamingViolation, err.Error())
	}
	var pass string
	var fields []directory.Field
	for _, a := range m.Attributes {
		key := attrKey(a.Type)
		if len(a.Vals) == 0 {
			return refuse(gldap.ResultProtocolError, a.Type+" has no values")
		}
		switch roleOf(key) {
		case roleObjectClass, roleDerived:
		case roleUserName:
			for _, v := range a.Vals {
				if !strings.EqualFold(v, name) {
					return refuse(gldap.ResultConstraintViolation, "uid and mail are the user name")
				}
			}
		case rolePassword:
			if len(a.Vals) != 1 {
				return refuse(gldap.ResultConstraintViolation, "userPassword takes one value")
			}
			pass = a.Vals[0]
		case roleNoUserMod:
			return refuse(gldap.ResultConstraintViolation, a.Type+" is not user-modifiable")
		default:
			if len(a.Vals) != 1 {
				return refuse(gldap.ResultConstraintViolation, a.Type+" takes one value")
			}
			f := directory.Field{Label: labelFor(key, nil), Value: a.Vals[0]}
			if we := validField(a.Type, f); we != nil {
				return we
			}
			for _, g := range fields {
				if g.Label == f.Label && g.Value != f.Value {
					return refuse(gldap.ResultConstraintViolation, a.Type+" conflicts with another attribute")
				}
			}
			fields = append(fields, f)
		}
	}
	if pass == "" {
		return refuse(gldap.ResultUnwillingToPerform, "a new user needs a userPassword")
	}
	hash, we := s.storedPassword(r, pass)
	if we != nil {
		return we
	}
	// Create decides "already exists" in the write's own transaction.
	if err := s.svc.Create(s.ctx, name, hash, fields); err != nil {
		if errors.Is(err, directory.ErrExists) {
			return refuse(gldap.ResultEntryAlreadyExists, "")
		}
		return s.fail("add", r, err)
	}
	s.audit(r, "add", name, "")
	return nil
}

// labelFor is the field label an attribute writes: the existing field's own
// spelling when there is one, else the lower-case attribute name.
func labelFor(key string, fields []directory.Field) string {
	switch roleOf(key) {
	case roleName:
		return labelName
	case roleTohost:
		return directory.LabelTohost
	}
	for _, f := range fields {
		if strings.EqualFold(f.Label, key) {
			return f.Label
		}
	}
	return key
}

func validField(attrType string, f directory.Field) *writeError {
	if directory.ValidateField(directory.Field{Label: f.Label}) != nil {
		return refuse(gldap.ResultUndefinedAttributeType, attrType+" cannot be a field name")
	}
	if f.Value == "" || directory.ValidateField(f) != nil {
		return refuse(gldap.ResultInvalidAttributeSyntax, "bad value for "+attrType)
	}
	return nil
}

// storedPassword is what a userPassword value becomes: a value with a
// {SCHEME} prefix is a hash and stored as given (as ldapadd of an export
// does), anything else is cleartext and hashed as the directory hashes
// every new password (its scheme and costs, in its hash pool, queued as
// r's client).
func (s *Server) storedPassword(r *gldap.Request, p string) (string, *writeError) {
	if password.HasScheme(p) {
		return p, nil
	}
	h, err := s.svc.HashPassword(s.clientCtx(r), p)
	if errors.Is(err, directory.ErrBusy) {
		return "", refuse(gldap.ResultBusy, "directory busy, try again")
	}
	if err != nil {
		return "", refuse(gldap.ResultConstraintViolation, "password cannot be stored: "+err.Error())
	}
	return h, nil
}

func (s *Server) modify(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.ModifyMessage) {
	s.answer(w, r, gldap.ApplicationModifyResponse, s.modifyUser(r, m))
}

func (s *Server) modifyUser(r *gldap.Request, m *gldap.ModifyMessage) *writeError {
	if we := s.adminOnly(r, m.Controls); we != nil {
		return we
	}
	name, we := s.userTarget(m.DN)
	if we != nil {
		return we
	}
	if normalized(name) == "" {
		return &writeError{gldap.ResultNoSuchObject, s.tree.usersDN}
	}
	// Hashing a new cleartext password is the expensive part: done once,
	// before the transaction, and only for a change list that can succeed
	// and an entry that exists (the transaction decides that for good).
	var hash string
	pass, we := checkChanges(m.Changes)
	if we == nil && pass != "" {
		if !password.HasScheme(pass) {
			if _, err := s.svc.Lookup(s.ctx, name); err != nil {
				return s.modifyFailed(r, err)
			}
		}
		if hash, we = s.storedPassword(r, pass); we != nil {
			return we
		}
	}
	// The whole change list is applied to the entry as stored, in the
	// write's own transaction: concurrent modifies of one entry compose
	// (two increments add up), and a refused one changes nothing. A user
	// deleted meanwhile stays deleted (noSuchObject).
	_, err := s.svc.Modify(s.ctx, name, func(u *directory.User) error {
		if we := applyChanges(u, m.Changes, hash); we != nil {
			return we
		}
		return nil
	})
	if err != nil {
		return s.modifyFailed(r, err)
	}
	s.audit(r, "modify", name, "")
	return nil
}

func (s *Server) modifyFailed(r *gldap.Request, err error) *writeError {
	var we *writeError
	switch {
	case errors.As(err, &we):
		return we
	case errors.Is(err, directory.ErrNotFound):
		return &writeError{gldap.ResultNoSuchObject, s.tree.usersDN}
	}
	return s.fail("modify", r, err)
}

func (we *writeError) Error() string { return we.msg }

// checkChange refuses a change no entry can take, whatever it holds, and
// returns the userPassword value a change sets ("" for other changes).
func checkChange(c gldap.Change) (string, *writeError) {
	typ, vals := c.Modification.Type, c.Modification.Vals
	switch roleOf(attrKey(typ)) {
	case roleObjectClass:
		if c.Operation == gldap.DeleteAttribute {
			return "", refuse(gldap.ResultObjectClassModsProhibited, "the object classes are fixed")
		}
	case roleUserName:
		return "", refuse(gldap.ResultNotAllowedOnRDN, typ+" is the user name: rename the entry instead")
	case roleNoUserMod:
		return "", refuse(gldap.ResultConstraintViolation, typ+" is not user-modifiable")
	case rolePassword:
		switch {
		case c.Operation == gldap.DeleteAttribute:
			return "", refuse(gldap.ResultUnwillingToPerform, "a user cannot be without a password")
		case c.Operation != gldap.AddAttribute && c.Operation != gldap.ReplaceAttribute:
			return "", refuse(gldap.ResultUnwillingToPerform, "userPassword cannot be incremented")
		case len(vals) != 1:
			return "", refuse(gldap.ResultConstraintViolation, "userPassword takes one value")
		case vals[0] == "":
			return "", refuse(gldap.ResultUnwillingToPerform, "a user cannot be without a password")
		}
		return vals[0], nil
	}
	return "", nil
}

// checkChanges runs checkChange over a change list: the first refusal, or
// the userPassword the list sets (the last one given).
func checkChanges(changes []gldap.Change) (string, *writeError) {
	var pass string
	for _, c := range changes {
		p, we := checkChange(c)
		if we != nil {
			return "", we
		}
		if p != "" {
			pass = p
		}
	}
	return pass, nil
}

// applyChanges applies a change list to u, in order, as one modify: the
// first change refused refuses them all (u is then to be dropped). hash is
// what the list's userPassword is stored as; "" when checkChanges refused
// the list, which applyChanges then refuses too, at the same change or at
// an earlier one that the entry refuses.
func applyChanges(u *directory.User, changes []gldap.Change, hash string) *writeError {
	fields := u.Fields
	setsPassword := false
	for _, c := range changes {
		p, we := checkChange(c)
		if we != nil {
			return we
		}
		setsPassword = setsPassword || p != ""
		typ := c.Modification.Type
		key := attrKey(typ)
		switch roleOf(key) {
		case roleField, roleName, roleTohost:
			if fields, we = change(fields, labelFor(key, fields), typ, c.Operation, c.Modification.Vals); we != nil {
				return we
			}
		}
	}
	u.Fields = fields
	if setsPassword {
		u.Password = hash
	}
	return nil
}

// change applies one modification to a single-valued field.
func change(fields []directory.Field, label, typ string, op int64, vals []string) ([]directory.Field, *writeError) {
	i := -1
	for j, f := range fields {
		if f.Label == label {
			i = j
		}
	}
	set := func(v string) ([]directory.Field, *writeError) {
		f := directory.Field{Label: label, Value: v}
		if we := validField(typ, f); we != nil {
			return nil, we
		}
		if i < 0 {
			return append(fields, f), nil
		}
		fields[i] = f
		return fields, nil
	}
	switch op {
	case gldap.AddAttribute:
		switch {
		case len(vals) == 0:
			return nil, refuse(gldap.ResultProtocolError, "add of "+typ+" without values")
		case i >= 0 && len(vals) == 1 && strings.EqualFold(fields[i].Value, vals[0]):
			return nil, refuse(gldap.ResultAttributeOrValueExists, "")
		case i >= 0 || len(vals) > 1:
			return nil, refuse(gldap.ResultConstraintViolation, typ+" takes one value")
		}
		return set(vals[0])
	case gldap.DeleteAttribute:
		if i < 0 {
			return nil, refuse(gldap.ResultNoSuchAttribute, "")
		}
		for _, v := range vals {
			if !strings.EqualFold(v, fields[i].Value) {
				return nil, refuse(gldap.ResultNoSuchAttribute, "")
			}
		}
		return append(fields[:i], fields[i+1:]...), nil
	case gldap.ReplaceAttribute:
		switch len(vals) {
		case 0:
			if i >= 0 {
				fields = append(fields[:i], fields[i+1:]...)
			}
			return fields, nil
		case 1:
			return set(vals[0])
		}
		return nil, refuse(gldap.ResultConstraintViolation, typ+" takes one value")
	case gldap.IncrementAttribute: // RFC 4525
		if len(vals) != 1 {
			return nil, refuse(gldap.ResultProtocolError, "increment takes one value")
		}
		if i < 0 {
			return nil, refuse(gldap.ResultNoSuchAttribute, "")
		}
		d, err1 := strconv.ParseInt(vals[0], 10, 64)
		n, err2 := strconv.ParseInt(fields[i].Value, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, refuse(gldap.ResultConstraintViolation, typ+" is not a number")
		}
		return set(strconv.FormatInt(n+d, 10))
	}
	return nil, refuse(gldap.ResultProtocolError, "unknown modify operation")
}

func (s *Server) delete(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.DeleteMessage) {
	s.answer(w, r, gldap.ApplicationDelResponse, s.deleteUser(r, m))
}

func (s *Server) deleteUser(r *gldap.Request, m *gldap.DeleteMessage) *writeError {
	if we := s.adminOnly(r, m.Controls); we != nil {
		return we
	}
	t, err := s.tree.resolve(m.DN)
	switch {
	case err != nil:
		return refuse(gldap.ResultInvalidDNSyntax, "invalid DN")
	case t.kind == kindBase || t.kind == kindUsers:
		return refuse(gldap.ResultNotAllowedOnNonLeaf, "")
	case t.kind != kindUser:
		return &writeError{gldap.ResultNoSuchObject, t.matched}
	case normalized(t.name) == "":
		return &writeError{gldap.ResultNoSuchObject, s.tree.usersDN}
	}
	if err := s.svc.Delete(s.ctx, t.name); err != nil {
		return s.fail("delete", r, err)
	}
	s.audit(r, "delete", t.name, "")
	return nil
}

func (s *Server) modifyDN(w *gldap.ResponseWriter, r *gldap.Request, m *gldap.ModifyDNMessage) {
	s.answer(w, r, gldap.ApplicationModifyDNResponse, s.rename(r, m))
}

func (s *Server) rename(r *gldap.Request, m *gldap.ModifyDNMessage) *writeError {
	if we := s.adminOnly(r, m.Controls); we != nil {
		return we
	}
	old, we := s.userTarget(m.DN)
	if we != nil {
		return we
	}
	if normalized(old) == "" {
		return &writeError{gldap.ResultNoSuchObject, s.tree.usersDN}
	}
	if m.NewSuperior != "" {
		t, err := s.tree.resolve(m.NewSuperior)
		switch {
		case err != nil:
			return refuse(gldap.ResultInvalidDNSyntax, "invalid newSuperior")
		case t.kind != kindUsers:
			return refuse(gldap.ResultUnwillingToPerform, "users stay under "+s.tree.usersDN)
		}
	}
	// deleteOldRDN makes no difference: uid and mail are single-valued,
	// so the old name cannot stay.
	name, ok := parseUserRDN(m.NewRDN)
	if !ok {
		return refuse(gldap.ResultNamingViolation, "the new RDN must be uid=<name> or mail=<name>")
	}
	if err := directory.ValidateName(name); err != nil {
		return refuse(gldap.ResultNamingViolation, err.Error())
	}
	// A new name with the same key changes only how the name is written.
	if err := s.svc.Rename(s.ctx, old, name); err != nil {
		return s.fail("rename", r, err)
	}
	s.audit(r, "modifydn", old, name)
	return nil
}
