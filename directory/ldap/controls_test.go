package ldap

import (
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// pagingCtl is a paged results control (RFC 2696) of size 10 and an
// empty cookie, critical or not (go-ldap's own type cannot be critical).
func pagingCtl(critical bool) *goldap.ControlString {
	seq := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "realSearchControlValue")
	seq.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(10), "size"))
	seq.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "cookie"))
	return goldap.NewControlString(goldap.ControlTypePaging, critical, string(seq.Bytes()))
}

// TestCriticalPagingOutsideSearch: paged results is a control of search
// only. On any other operation a critical one is refused with
// unavailableCriticalExtension and the operation is not performed (RFC
// 4511 4.1.11); one that is not critical is ignored. On a search it pages.
func TestCriticalPagingOutsideSearch(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "quota", "1")
	h.user("bob@example.com")
	a := h.admin()
	dn := userDN("alice@example.com")
	critical := []goldap.Control{pagingCtl(true)}

	m := goldap.NewModifyRequest(dn, critical)
	m.Replace("quota", []string{"2"})
	wantCode(t, a.Modify(m), goldap.LDAPResultUnavailableCriticalExtension)
	if q := h.lookup("alice@example.com").Get("quota"); q != "1" {
		t.Errorf("refused modify changed quota to %s", q)
	}
	m.Controls = []goldap.Control{pagingCtl(false)}
	wantCode(t, a.Modify(m), goldap.LDAPResultSuccess)
	if q := h.lookup("alice@example.com").Get("quota"); q != "2" {
		t.Errorf("modify with a non-critical paging control: quota %s", q)
	}

	add := goldap.NewAddRequest(userDN("new@example.com"), critical)
	add.Attribute("userPassword", []string{"secret"})
	wantCode(t, a.Add(add), goldap.LDAPResultUnavailableCriticalExtension)
	wantCode(t, a.Del(goldap.NewDelRequest(userDN("bob@example.com"), critical)), goldap.LDAPResultUnavailableCriticalExtension)
	wantCode(t, a.ModifyDN(goldap.NewModifyDNWithControlsRequest(userDN("bob@example.com"), "uid=bob2@example.com", true, "", critical)),
		goldap.LDAPResultUnavailableCriticalExtension)
	h.lookup("bob@example.com")
	_, err := a.WhoAmI(critical)
	wantCode(t, err, goldap.LDAPResultUnavailableCriticalExtension)
	_, err = h.dial().SimpleBind(&goldap.SimpleBindRequest{Username: dn, Password: "pw-alice@example.com", Controls: critical})
	wantCode(t, err, goldap.LDAPResultUnavailableCriticalExtension)

	// Compare and Password Modify: go-ldap sends them without controls.
	rc := h.raw()
	rc.send(bindOp(3, testAdminDN, simple(testAdminPW)))
	if _, _, code, _ := rc.read(); code != 0 {
		t.Fatalf("bind: %d", code)
	}
	ctl := pagingCtl(true).Encode()
	cmp := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationCompareRequest, nil, "Compare")
	cmp.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "entry"))
	ava := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "ava")
	ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "quota", "desc"))
	ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "2", "value"))
	cmp.AppendChild(ava)
	rc.send(cmp, ctl)
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationCompareResponse || code != goldap.LDAPResultUnavailableCriticalExtension {
		t.Errorf("compare with a critical paging control: tag %d, code %d", tag, code)
	}
	pw := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedRequest, nil, "Extended")
	pw.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.4203.1.11.1", "name"))
	val := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "PasswdModifyRequestValue")
	val.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, dn, "userIdentity"))
	val.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 2, "changed", "newPasswd"))
	pw.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, string(val.Bytes()), "value"))
	rc.send(pw, ctl)
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationExtendedResponse || code != goldap.LDAPResultUnavailableCriticalExtension {
		t.Errorf("password modify with a critical paging control: tag %d, code %d", tag, code)
	}
	wantCode(t, h.dial().Bind(dn, "pw-alice@example.com"), goldap.LDAPResultSuccess)
	// The same request without the control changes the password.
	rc.send(pw)
	if _, _, code, _ := rc.read(); code != 0 {
		t.Errorf("password modify: code %d", code)
	}
	wantCode(t, h.dial().Bind(dn, "changed"), goldap.LDAPResultSuccess)

	// On a search, a critical paging control pages.
	res, err := a.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 0, false,
		"(objectClass=*)", []string{"uid"}, critical))
	if err != nil || len(res.Entries) != 2 || goldap.FindControl(res.Controls, goldap.ControlTypePaging) == nil {
		t.Fatalf("search with a critical paging control: %v, %d entries, controls %v", err, len(res.Entries), res)
	}
}
