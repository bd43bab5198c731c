package ldap

import (
	"context"
	"errors"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/directory"
)

func (h *harness) lookup(name string) *directory.User {
	h.t.Helper()
	u, err := h.svc.Lookup(context.Background(), name)
	if err != nil {
		h.t.Fatalf("lookup %s: %v", name, err)
	}
	return u
}

func TestAdd(t *testing.T) {
	h := start(t, adminConfig())
	a := h.admin()
	add := goldap.NewAddRequest(userDN("new@example.com"), nil)
	add.Attribute("objectClass", []string{"top", "inetOrgPerson", "tohostUser"})
	add.Attribute("uid", []string{"new@example.com"})
	add.Attribute("mail", []string{"New@example.com"})
	add.Attribute("cn", []string{"New User"})
	add.Attribute("sn", []string{"User"})
	add.Attribute("mailHost", []string{"backend3.example"})
	add.Attribute("Quota", []string{"42"})
	add.Attribute("userPassword", []string{"secret"})
	wantCode(t, a.Add(add), goldap.LDAPResultSuccess)
	u := h.lookup("new@example.com")
	if u.Get("name") != "New User" || u.Tohost() != "backend3.example" || u.Get("quota") != "42" ||
		!strings.HasPrefix(u.Password, "{SSHA}") {
		t.Errorf("added %+v", u)
	}
	// The new user binds with the cleartext password, which was hashed.
	wantCode(t, h.dial().Bind(userDN("new@example.com"), "secret"), goldap.LDAPResultSuccess)
	// Twice: already exists.
	wantCode(t, a.Add(add), goldap.LDAPResultEntryAlreadyExists)

	// A hash is stored as given.
	add = goldap.NewAddRequest("mail=hashed@example.com,ou=users,"+testBase, nil)
	add.Attribute("userPassword", []string{"{SSHA}lGbs/mUlQdcjeL8SdIVgYnzxDnhzYWx0c2FsdA=="})
	wantCode(t, a.Add(add), goldap.LDAPResultSuccess)
	if p := h.lookup("hashed@example.com").Password; p != "{SSHA}lGbs/mUlQdcjeL8SdIVgYnzxDnhzYWx0c2FsdA==" {
		t.Errorf("stored %q", p)
	}

	for _, tc := range []struct {
		dn    string
		attrs map[string][]string
		code  uint16
	}{
		{userDN("nopw@example.com"), map[string][]string{"cn": {"x"}}, goldap.LDAPResultUnwillingToPerform},
		{userDN("other@example.com"), map[string][]string{"userPassword": {"x"}, "uid": {"different@example.com"}}, goldap.LDAPResultConstraintViolation},
		{userDN("two@example.com"), map[string][]string{"userPassword": {"x"}, "quota": {"1", "2"}}, goldap.LDAPResultConstraintViolation},
		{userDN("bad@example.com"), map[string][]string{"userPassword": {"x"}, "quota": {"a\"b"}}, goldap.LDAPResultInvalidAttributeSyntax},
		{userDN("op@example.com"), map[string][]string{"userPassword": {"x"}, "createTimestamp": {"20200101000000Z"}}, goldap.LDAPResultConstraintViolation},
		{userDN("sp ace@example.com"), map[string][]string{"userPassword": {"x"}}, goldap.LDAPResultNamingViolation},
		{userDN("ctl@example.com"), map[string][]string{"userPassword": {"{SSHA}abc\nb@x:{PLAIN}x"}}, goldap.LDAPResultUnwillingToPerform},
		{"ou=users," + testBase, map[string][]string{"ou": {"users"}}, goldap.LDAPResultEntryAlreadyExists},
		{"cn=group," + testBase, map[string][]string{"cn": {"group"}}, goldap.LDAPResultUnwillingToPerform},
		{"uid=x,dc=other", map[string][]string{"userPassword": {"x"}}, goldap.LDAPResultNoSuchObject},
		// Under a parent that does not exist: noSuchObject; under a user
		// that does: unwilling, a user holds no entries.
		{"uid=x,ou=groups," + testBase, map[string][]string{"userPassword": {"x"}}, goldap.LDAPResultNoSuchObject},
		{"cn=x,ou=groups," + testBase, map[string][]string{"cn": {"x"}}, goldap.LDAPResultNoSuchObject},
		{"cn=x," + userDN("missing@example.com"), map[string][]string{"cn": {"x"}}, goldap.LDAPResultNoSuchObject},
		{"cn=x," + userDN("sp ace@example.com"), map[string][]string{"cn": {"x"}}, goldap.LDAPResultNoSuchObject},
		{"cn=x," + userDN("new@example.com"), map[string][]string{"cn": {"x"}}, goldap.LDAPResultUnwillingToPerform},
		{"bad dn", map[string][]string{"userPassword": {"x"}}, goldap.LDAPResultInvalidDNSyntax},
	} {
		add := goldap.NewAddRequest(tc.dn, nil)
		for k, v := range tc.attrs {
			add.Attribute(k, v)
		}
		wantCode(t, a.Add(add), tc.code)
	}
	var le *goldap.Error
	add = goldap.NewAddRequest("cn=x,ou=groups,"+testBase, nil)
	add.Attribute("cn", []string{"x"})
	if err := a.Add(add); !errors.As(err, &le) || le.MatchedDN != testBase {
		t.Fatalf("add under a missing ou: %v, matched %q", err, le.MatchedDN)
	}
	// Only the admin writes.
	h.user("alice@example.com")
	add = goldap.NewAddRequest(userDN("x@example.com"), nil)
	add.Attribute("userPassword", []string{"x"})
	wantCode(t, h.bound(userDN("alice@example.com"), "pw-alice@example.com").Add(add), goldap.LDAPResultInsufficientAccessRights)
	wantCode(t, h.dial().Add(add), goldap.LDAPResultInsufficientAccessRights)
}

func TestModify(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "tohost", "backend1.example", "quota", "10", "status", "ok")
	a := h.admin()
	dn := userDN("alice@example.com")
	mod := goldap.NewModifyRequest(dn, nil)
	mod.Replace("mailHost", []string{"backend2.example"})
	mod.Add("note", []string{"vip"})
	mod.Delete("status", nil)
	mod.Replace("cn", []string{"Alice L."})
	mod.Increment("quota", "5")
	mod.Replace("userPassword", []string{"new-secret"})
	mod.Add("objectClass", []string{"tohostUser"})
	wantCode(t, a.Modify(mod), goldap.LDAPResultSuccess)
	u := h.lookup("alice@example.com")
	if u.Tohost() != "backend2.example" || u.Get("note") != "vip" || u.Get("status") != "" || u.Get("name") != "Alice L." ||
		u.Get("quota") != "15" {
		t.Errorf("modified: %+v", u.Fields)
	}
	wantCode(t, h.dial().Bind(dn, "new-secret"), goldap.LDAPResultSuccess)
	wantCode(t, h.dial().Bind(dn, "pw-alice@example.com"), goldap.LDAPResultInvalidCredentials)

	for _, tc := range []struct {
		dn   string
		mod  func(m *goldap.ModifyRequest)
		code uint16
	}{
		{dn, func(m *goldap.ModifyRequest) { m.Replace("uid", []string{"x"}) }, goldap.LDAPResultNotAllowedOnRDN},
		{dn, func(m *goldap.ModifyRequest) { m.Delete("nosuch", nil) }, goldap.LDAPResultNoSuchAttribute},
		{dn, func(m *goldap.ModifyRequest) { m.Delete("note", []string{"other"}) }, goldap.LDAPResultNoSuchAttribute},
		{dn, func(m *goldap.ModifyRequest) { m.Add("note", []string{"vip"}) }, goldap.LDAPResultAttributeOrValueExists},
		{dn, func(m *goldap.ModifyRequest) { m.Add("note", []string{"second"}) }, goldap.LDAPResultConstraintViolation},
		{dn, func(m *goldap.ModifyRequest) { m.Replace("note", []string{"a", "b"}) }, goldap.LDAPResultConstraintViolation},
		{dn, func(m *goldap.ModifyRequest) { m.Delete("userPassword", nil) }, goldap.LDAPResultUnwillingToPerform},
		{dn, func(m *goldap.ModifyRequest) { m.Delete("objectClass", []string{"tohostUser"}) }, goldap.LDAPResultObjectClassModsProhibited},
		{dn, func(m *goldap.ModifyRequest) { m.Replace("modifyTimestamp", []string{"x"}) }, goldap.LDAPResultConstraintViolation},
		{dn, func(m *goldap.ModifyRequest) { m.Replace("bad label!", []string{"x"}) }, goldap.LDAPResultUndefinedAttributeType},
		{dn, func(m *goldap.ModifyRequest) { m.Increment("note", "1") }, goldap.LDAPResultConstraintViolation},
		// Changes are checked in order: the first refused one answers.
		{dn, func(m *goldap.ModifyRequest) { m.Delete("nosuch", nil); m.Replace("uid", []string{"x"}) }, goldap.LDAPResultNoSuchAttribute},
		{dn, func(m *goldap.ModifyRequest) { m.Replace("uid", []string{"x"}); m.Delete("nosuch", nil) }, goldap.LDAPResultNotAllowedOnRDN},
		{dn, func(m *goldap.ModifyRequest) {
			m.Add("note", []string{"vip"})
			m.Replace("userPassword", []string{"x"})
		}, goldap.LDAPResultAttributeOrValueExists},
		{userDN("nobody@example.com"), func(m *goldap.ModifyRequest) { m.Replace("note", []string{"x"}) }, goldap.LDAPResultNoSuchObject},
		{userDN("nobody@example.com"), func(m *goldap.ModifyRequest) { m.Replace("userPassword", []string{"x"}) }, goldap.LDAPResultNoSuchObject},
		{"ou=users," + testBase, func(m *goldap.ModifyRequest) { m.Replace("description", []string{"x"}) }, goldap.LDAPResultUnwillingToPerform},
	} {
		m := goldap.NewModifyRequest(tc.dn, nil)
		tc.mod(m)
		wantCode(t, a.Modify(m), tc.code)
	}
	// A failed modify changes nothing.
	m := goldap.NewModifyRequest(dn, nil)
	m.Replace("note", []string{"changed"})
	m.Replace("uid", []string{"x"})
	wantCode(t, a.Modify(m), goldap.LDAPResultNotAllowedOnRDN)
	if h.lookup("alice@example.com").Get("note") != "vip" {
		t.Error("half-applied modify")
	}
	m = goldap.NewModifyRequest(dn, nil)
	m.Replace("note", []string{"x"})
	wantCode(t, h.bound(dn, "new-secret").Modify(m), goldap.LDAPResultInsufficientAccessRights)
}

func TestDelete(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	h.user("bob@example.com")
	a := h.admin()
	wantCode(t, h.bound(userDN("bob@example.com"), "pw-bob@example.com").Del(goldap.NewDelRequest(userDN("alice@example.com"), nil)),
		goldap.LDAPResultInsufficientAccessRights)
	wantCode(t, a.Del(goldap.NewDelRequest(userDN("alice@example.com"), nil)), goldap.LDAPResultSuccess)
	wantCode(t, a.Del(goldap.NewDelRequest(userDN("alice@example.com"), nil)), goldap.LDAPResultNoSuchObject)
	wantCode(t, a.Del(goldap.NewDelRequest("ou=users,"+testBase, nil)), goldap.LDAPResultNotAllowedOnNonLeaf)
	wantCode(t, a.Del(goldap.NewDelRequest(testBase, nil)), goldap.LDAPResultNotAllowedOnNonLeaf)
	wantCode(t, a.Del(goldap.NewDelRequest("cn=x,"+testBase, nil)), goldap.LDAPResultNoSuchObject)
	if _, err := h.svc.Lookup(context.Background(), "alice@example.com"); err != directory.ErrNotFound {
		t.Errorf("deleted user: %v", err)
	}
}

func TestModifyDN(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "quota", "7")
	h.user("bob@example.com")
	a := h.admin()
	wantCode(t, a.ModifyDN(goldap.NewModifyDNRequest(userDN("alice@example.com"), "uid=alice2@example.com", true, "")), goldap.LDAPResultSuccess)
	if u := h.lookup("alice2@example.com"); u.Get("quota") != "7" {
		t.Errorf("renamed: %+v", u)
	}
	wantCode(t, h.dial().Bind(userDN("alice2@example.com"), "pw-alice@example.com"), goldap.LDAPResultSuccess)
	for _, tc := range []struct {
		dn, rdn, sup string
		code         uint16
	}{
		{userDN("alice2@example.com"), "uid=bob@example.com", "", goldap.LDAPResultEntryAlreadyExists},
		{userDN("nobody@example.com"), "uid=x@example.com", "", goldap.LDAPResultNoSuchObject},
		{userDN("bob@example.com"), "cn=bob", "", goldap.LDAPResultNamingViolation},
		{userDN("bob@example.com"), "uid=b ob", "", goldap.LDAPResultNamingViolation},
		{userDN("bob@example.com"), "mail=bob2@example.com", "ou=other," + testBase, goldap.LDAPResultUnwillingToPerform},
		{"ou=users," + testBase, "ou=people", "", goldap.LDAPResultUnwillingToPerform},
	} {
		wantCode(t, a.ModifyDN(goldap.NewModifyDNRequest(tc.dn, tc.rdn, true, tc.sup)), tc.code)
	}
	wantCode(t, a.ModifyDN(goldap.NewModifyDNRequest(userDN("bob@example.com"), "mail=bob2@example.com", false, "ou=users,"+testBase)), goldap.LDAPResultSuccess)
	h.lookup("bob2@example.com")
	// Only the case: the name is written anew, the record stays.
	wantCode(t, a.ModifyDN(goldap.NewModifyDNRequest(userDN("bob2@example.com"), "uid=Bob2@Example.com", true, "")), goldap.LDAPResultSuccess)
	if u := h.lookup("bob2@example.com"); u.Display != "Bob2@Example.com" {
		t.Errorf("case-only rename kept display %q", u.Display)
	}
	wantCode(t, h.dial().ModifyDN(goldap.NewModifyDNRequest(userDN("bob2@example.com"), "uid=b@example.com", true, "")), goldap.LDAPResultInsufficientAccessRights)
}

// An empty userPassword cannot be stored (the directory reads "" as "keep
// the password"): refused, not answered with a success that changed nothing.
func TestModifyEmptyPassword(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "quota", "1")
	m := goldap.NewModifyRequest(userDN("alice@example.com"), nil)
	m.Replace("quota", []string{"2"})
	m.Replace("userPassword", []string{""})
	wantCode(t, h.admin().Modify(m), goldap.LDAPResultUnwillingToPerform)
	if h.lookup("alice@example.com").Get("quota") != "1" {
		t.Error("half-applied modify")
	}
	wantCode(t, h.dial().Bind(userDN("alice@example.com"), "pw-alice@example.com"), goldap.LDAPResultSuccess)
}
