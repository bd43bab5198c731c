package ldap

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

func TestRootDSE(t *testing.T) {
	h := start(t, adminConfig())
	c := h.dial() // anonymous, no anonymous reads: the root DSE is still readable
	es, err := search(t, c, "", goldap.ScopeBaseObject, "(objectClass=*)",
		"namingContexts", "supportedLDAPVersion", "supportedControl", "supportedExtension")
	if err != nil || len(es) != 1 {
		t.Fatalf("root DSE: %v, %v", es, err)
	}
	e := es[0]
	if e.GetAttributeValue("namingContexts") != testBase || e.GetAttributeValue("supportedLDAPVersion") != "3" {
		t.Errorf("root DSE: %v", e.Attributes)
	}
	if !slices.Contains(e.GetAttributeValues("supportedControl"), "1.2.840.113556.1.4.319") {
		t.Errorf("paging not announced: %v", e.GetAttributeValues("supportedControl"))
	}
	ext := e.GetAttributeValues("supportedExtension")
	for _, oid := range []string{"1.3.6.1.4.1.4203.1.11.1", "1.3.6.1.4.1.4203.1.11.3"} {
		if !slices.Contains(ext, oid) {
			t.Errorf("extension %s not announced: %v", oid, ext)
		}
	}
	// Operational attributes come only when asked for.
	es, _ = search(t, c, "", goldap.ScopeBaseObject, "(objectClass=*)")
	if len(es) != 1 || es[0].GetAttributeValue("namingContexts") != "" || es[0].GetAttributeValue("objectClass") != "top" {
		t.Errorf("root DSE with no attribute list: %v", es[0].Attributes)
	}
	es, _ = search(t, c, "", goldap.ScopeBaseObject, "(objectClass=*)", "+")
	if len(es) != 1 || es[0].GetAttributeValue("namingContexts") != testBase {
		t.Errorf("root DSE with +: %v", es[0].Attributes)
	}
}

func TestUserEntry(t *testing.T) {
	h := start(t, adminConfig())
	h.user("Alice@Example.com", "tohost", "backend1.example", "name", "Alice Liddell", "quota", "1000")
	h.user("bob@example.com")
	a := h.admin()
	es, err := search(t, a, testBase, goldap.ScopeWholeSubtree, "(uid=alice@example.com)")
	if err != nil || len(es) != 1 {
		t.Fatalf("%v, %v", es, err)
	}
	e := es[0]
	if !strings.EqualFold(e.DN, userDN("alice@example.com")) {
		t.Errorf("DN %q", e.DN)
	}
	want := map[string][]string{
		"objectClass":  {"top", "person", "organizationalPerson", "inetOrgPerson", "tohostUser"},
		"uid":          {"Alice@Example.com"},
		"mail":         {"Alice@Example.com"},
		"cn":           {"Alice Liddell"},
		"sn":           {"Alice Liddell"},
		"mailHost":     {"backend1.example"},
		"tohost":       {"backend1.example"},
		"quota":        {"1000"},
		"userPassword": nil, // checked below
	}
	for _, at := range e.Attributes {
		w, ok := want[at.Name]
		if !ok {
			t.Errorf("unexpected attribute %s: %v", at.Name, at.Values)
			continue
		}
		delete(want, at.Name)
		if at.Name == "userPassword" {
			if len(at.Values) != 1 || !strings.HasPrefix(at.Values[0], "{SSHA}") {
				t.Errorf("userPassword %v", at.Values)
			}
			continue
		}
		if !slices.Equal(at.Values, w) {
			t.Errorf("%s = %v, want %v", at.Name, at.Values, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing attributes %v", want)
	}
	// Without a name field, cn and sn are the user name.
	es, _ = search(t, a, userDN("bob@example.com"), goldap.ScopeBaseObject, "(objectClass=*)", "cn", "sn", "mailHost")
	if len(es) != 1 || es[0].GetAttributeValue("cn") != "bob@example.com" || es[0].GetAttributeValue("sn") != "bob@example.com" ||
		len(es[0].Attributes) != 2 {
		t.Errorf("bob: %v", es[0].Attributes)
	}
}

func TestAccess(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	h.user("bob@example.com")
	all := "(objectClass=*)"

	// A user reads their own entry, without userPassword, and nobody else's.
	c := h.bound(userDN("alice@example.com"), "pw-alice@example.com")
	es, err := search(t, c, testBase, goldap.ScopeWholeSubtree, "(objectClass=inetOrgPerson)", "*", "userPassword")
	if err != nil || len(es) != 1 || es[0].DN != userDN("alice@example.com") || es[0].GetAttributeValue("userPassword") != "" {
		t.Fatalf("alice sees %v, %v", dns(es), err)
	}
	es, err = search(t, c, userDN("bob@example.com"), goldap.ScopeBaseObject, all)
	if err != nil || len(es) != 0 {
		t.Errorf("alice reads bob: %v, %v", dns(es), err)
	}
	_, err = c.Compare(userDN("bob@example.com"), "uid", "bob@example.com")
	wantCode(t, err, goldap.LDAPResultInsufficientAccessRights)

	// Anonymous: nothing but the root DSE.
	c = h.dial()
	_, err = search(t, c, testBase, goldap.ScopeWholeSubtree, all)
	wantCode(t, err, goldap.LDAPResultInsufficientAccessRights)
	_, err = c.Compare(userDN("bob@example.com"), "uid", "bob@example.com")
	wantCode(t, err, goldap.LDAPResultInsufficientAccessRights)

	// With anonymous reads everybody reads everyone, userPassword excepted.
	h2 := start(t, options{cfg: Config{AnonymousRead: true}})
	h2.user("alice@example.com")
	h2.user("bob@example.com")
	for _, c := range []*goldap.Conn{h2.dial(), h2.bound(userDN("alice@example.com"), "pw-alice@example.com")} {
		es, err = search(t, c, testBase, goldap.ScopeWholeSubtree, "(uid=*)", "*", "userPassword")
		if err != nil || len(es) != 2 {
			t.Fatalf("anonymous read: %v, %v", dns(es), err)
		}
		for _, e := range es {
			if e.GetAttributeValue("userPassword") != "" {
				t.Errorf("userPassword shown to a non-admin")
			}
		}
		es, _ = search(t, c, testBase, goldap.ScopeWholeSubtree, "(userPassword=*)")
		if len(es) != 0 {
			t.Errorf("filter on userPassword matched for a non-admin")
		}
	}
}

func TestScopes(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	h.user("bob@example.com")
	a := h.admin()
	users := "ou=users," + testBase
	for _, tc := range []struct {
		base  string
		scope int
		want  []string
	}{
		{testBase, goldap.ScopeBaseObject, []string{testBase}},
		{testBase, goldap.ScopeSingleLevel, []string{users}},
		{testBase, goldap.ScopeWholeSubtree, []string{testBase, users, userDN("alice@example.com"), userDN("bob@example.com")}},
		{users, goldap.ScopeBaseObject, []string{users}},
		{users, goldap.ScopeSingleLevel, []string{userDN("alice@example.com"), userDN("bob@example.com")}},
		{users, goldap.ScopeWholeSubtree, []string{users, userDN("alice@example.com"), userDN("bob@example.com")}},
		{userDN("bob@example.com"), goldap.ScopeBaseObject, []string{userDN("bob@example.com")}},
		{userDN("bob@example.com"), goldap.ScopeSingleLevel, nil},
		{userDN("bob@example.com"), goldap.ScopeWholeSubtree, []string{userDN("bob@example.com")}},
		{"", goldap.ScopeSingleLevel, []string{testBase}},
	} {
		es, err := search(t, a, tc.base, tc.scope, "(objectClass=*)", "1.1")
		if err != nil || !slices.Equal(dns(es), tc.want) {
			t.Errorf("base %q scope %d: %q, %v; want %q", tc.base, tc.scope, dns(es), err, tc.want)
		}
		for _, e := range es {
			if len(e.Attributes) != 0 {
				t.Errorf("1.1 returned attributes %v", e.Attributes)
			}
		}
	}
	// The base entry and ou=users are real entries.
	es, _ := search(t, a, testBase, goldap.ScopeBaseObject, "(objectClass=*)")
	if e := es[0]; e.GetAttributeValue("dc") != "example" || !slices.Contains(e.GetAttributeValues("objectClass"), "dcObject") {
		t.Errorf("base entry %v", e.Attributes)
	}
	es, _ = search(t, a, users, goldap.ScopeBaseObject, "(ou=users)")
	if len(es) != 1 {
		t.Errorf("(ou=users) at ou=users: %v", dns(es))
	}
}

func TestNoSuchObject(t *testing.T) {
	h := start(t, adminConfig())
	a := h.admin()
	for _, tc := range []struct{ base, matched string }{
		{userDN("nobody@example.com"), "ou=users," + testBase},
		{"ou=groups," + testBase, testBase},
		{"cn=x,ou=groups," + testBase, testBase},
		{"dc=other,dc=org", ""},
		{testAdminDN, testBase}, // a bind identity, not an entry
	} {
		_, err := search(t, a, tc.base, goldap.ScopeWholeSubtree, "(objectClass=*)")
		wantCode(t, err, goldap.LDAPResultNoSuchObject)
		if le := err.(*goldap.Error); le.MatchedDN != tc.matched {
			t.Errorf("%s: matched %q, want %q", tc.base, le.MatchedDN, tc.matched)
		}
	}
	_, err := search(t, a, "not a dn", goldap.ScopeWholeSubtree, "(objectClass=*)")
	wantCode(t, err, goldap.LDAPResultInvalidDNSyntax)
}

func TestFilters(t *testing.T) {
	h := start(t, options{cfg: Config{AnonymousRead: true}})
	h.user("alice@example.com", "tohost", "backend1.example", "name", "Alice Liddell", "quota", "100")
	h.user("bob@example.com", "tohost", "backend2.example", "quota", "2000")
	h.user("carol@other.org", "tohost", "backend1.example", "name", "Carol", "status", "suspended")
	c := h.dial()
	a, b, cl := userDN("alice@example.com"), userDN("bob@example.com"), userDN("carol@other.org")
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"(uid=alice@example.com)", []string{a}},
		{"(UID=ALICE@EXAMPLE.COM)", []string{a}},
		{"(mail=bob@example.com)", []string{b}},
		{"(uid=nobody@example.com)", nil},
		{"(uid=bad name)", nil},
		{"(uid=*@example.com)", []string{a, b}},
		{"(uid=a*)", []string{a}},
		{"(mail=*o*@*)", []string{b, cl}},
		{"(cn=Alice*)", []string{a}},
		{"(cn=*liddell)", []string{a}},
		{"(sn=carol)", []string{cl}},
		{"(mailHost=backend1.example)", []string{a, cl}},
		{"(tohost=backend2.example)", []string{b}},
		{"(status=*)", []string{cl}},
		{"(!(status=*))", []string{testBase, "ou=users," + testBase, a, b}},
		{"(&(objectClass=inetOrgPerson)(!(status=*)))", []string{a, b}},
		{"(|(uid=alice@example.com)(uid=carol@other.org))", []string{a, cl}},
		{"(|(uid=alice@example.com)(quota=2000))", []string{a, b}},
		{"(&(uid=*@example.com)(quota>=1000))", []string{b}},
		{"(quota<=100)", []string{a}},
		{"(&(mail=alice@example.com)(mailHost=backend2.example))", nil},
		{"(objectClass=tohostUser)", []string{a, b, cl}},
		{"(objectClass=organizationalUnit)", []string{"ou=users," + testBase}},
		{"(uid:=bob@example.com)", []string{b}},
		{"(uid:caseExactMatch:=bob@example.com)", nil}, // matching rules: Undefined
		// dnAttributes: the values in the entry's DN match too.
		{"(ou:dn:=users)", []string{"ou=users," + testBase, a, b, cl}},
		{"(ou:=users)", []string{"ou=users," + testBase}},
		{"(dc:dn:=EXAMPLE)", []string{testBase, "ou=users," + testBase, a, b, cl}},
		{"(uid:dn:=bob@example.com)", []string{b}},
		{"(&(ou:dn:=users)(mailHost=backend1.example))", []string{a, cl}},
		{"(!(ou:dn:=users))", []string{testBase}},
		{"(nosuchattr=x)", nil},
		{"(uid~=bob@example.com)", []string{b}},
	} {
		es, err := search(t, c, testBase, goldap.ScopeWholeSubtree, tc.filter, "1.1")
		if err != nil || !slices.Equal(dns(es), tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.filter, dns(es), err, tc.want)
		}
	}
}

// countingStore counts the users Search hands out: equality on uid and mail
// must be answered by lookups, not by scanning. While stall is set, a
// search holds each user until its context is done or stall is closed.
type countingStore struct {
	directory.Store
	gets, scanned atomic.Int64
	stall         atomic.Pointer[chan struct{}]
}

func (s *countingStore) Get(ctx context.Context, name string) (*directory.User, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, name)
}

func (s *countingStore) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	return s.Store.Search(ctx, m, func(u *directory.User) error {
		s.scanned.Add(1)
		if stall := s.stall.Load(); stall != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-*stall:
			}
		}
		return fn(u)
	})
}

func TestEqualityUsesIndex(t *testing.T) {
	cs := &countingStore{}
	h := start(t, options{cfg: Config{AnonymousRead: true}, wrap: func(s directory.Store) directory.Store { cs.Store = s; return cs }})
	fill(h, 50)
	c := h.dial()
	for _, f := range []string{
		"(uid=user0007@example.com)",
		"(mail=USER0007@example.com)",
		"(&(objectClass=inetOrgPerson)(uid=user0007@example.com))",
		"(&(quota>=1)(mail=user0007@example.com)(cn=*))",
		"(|(uid=user0007@example.com)(mail=user0008@example.com))",
	} {
		cs.scanned.Store(0)
		cs.gets.Store(0)
		if _, err := search(t, c, testBase, goldap.ScopeWholeSubtree, f); err != nil {
			t.Fatal(err)
		}
		if cs.scanned.Load() != 0 || cs.gets.Load() == 0 {
			t.Errorf("%s: scanned %d users, %d lookups", f, cs.scanned.Load(), cs.gets.Load())
		}
	}
	// A prefix narrows the scan to the users it matches.
	cs.scanned.Store(0)
	es, _ := search(t, c, testBase, goldap.ScopeWholeSubtree, "(uid=user001*)")
	if len(es) != 10 || cs.scanned.Load() != 10 {
		t.Errorf("(uid=user001*): %d entries, %d scanned", len(es), cs.scanned.Load())
	}
}

func TestAttributeSelection(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "tohost", "backend1.example", "quota", "5")
	a := h.admin()
	names := func(attrs ...string) []string {
		t.Helper()
		es, err := search(t, a, userDN("alice@example.com"), goldap.ScopeBaseObject, "(objectClass=*)", attrs...)
		if err != nil || len(es) != 1 {
			t.Fatalf("%v, %v", es, err)
		}
		var out []string
		for _, at := range es[0].Attributes {
			out = append(out, at.Name)
		}
		return out
	}
	all := []string{"objectClass", "uid", "mail", "cn", "sn", "mailHost", "tohost", "userPassword", "quota"}
	ops := []string{"createTimestamp", "modifyTimestamp", "entryDN", "structuralObjectClass", "hasSubordinates"}
	for _, tc := range []struct {
		attrs []string
		want  []string
	}{
		{nil, all},
		{[]string{"*"}, all},
		{[]string{"+"}, ops},
		{[]string{"*", "+"}, append(slices.Clone(all), ops...)},
		{[]string{"1.1"}, nil},
		{[]string{"mailhost", "MAIL", "nosuch", "Quota"}, []string{"mailHost", "mail", "quota"}},
		{[]string{"entryDN", "commonName"}, []string{"entryDN", "cn"}},
	} {
		if got := names(tc.attrs...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.attrs, got, tc.want)
		}
	}
	// typesOnly: names without values.
	res, err := a.Search(goldap.NewSearchRequest(userDN("alice@example.com"), goldap.ScopeBaseObject, 0, 0, 0, true, "(objectClass=*)", []string{"mail"}, nil))
	if err != nil || len(res.Entries) != 1 || len(res.Entries[0].Attributes) != 1 || len(res.Entries[0].Attributes[0].Values) != 0 {
		t.Errorf("typesOnly: %v", err)
	}
}

func TestSizeAndTimeLimits(t *testing.T) {
	cs := &countingStore{}
	h := start(t, options{cfg: Config{AnonymousRead: true}, wrap: func(s directory.Store) directory.Store { cs.Store = s; return cs }})
	fill(h, 20)
	c := h.dial()
	res, err := c.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 5, 0, false, "(uid=*)", nil, nil))
	wantCode(t, err, goldap.LDAPResultSizeLimitExceeded)
	if res == nil || len(res.Entries) != 5 {
		t.Errorf("size limit 5: %v", res)
	}
	res, err = c.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 20, 0, false, "(uid=*)", nil, nil))
	if err != nil || len(res.Entries) != 20 {
		t.Errorf("size limit 20 of 20: %v", err)
	}
	// A search the store holds up until its time limit (1 s, the least
	// LDAP can ask) ends with timeLimitExceeded. Should the limit not
	// work, the search waits for the client's own timeout and fails; the
	// store is released when the test ends.
	stall := make(chan struct{})
	cs.stall.Store(&stall)
	t.Cleanup(func() { close(stall) })
	_, err = c.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 1, false, "(uid=*)", nil, nil))
	wantCode(t, err, goldap.LDAPResultTimeLimitExceeded)
}

func TestPaging(t *testing.T) {
	cs := &countingStore{}
	h := start(t, options{cfg: Config{AnonymousRead: true}, wrap: func(s directory.Store) directory.Store { cs.Store = s; return cs }})
	fill(h, 250)
	c := h.dial()
	for _, tc := range []struct {
		base, filter string
		size         uint32
		want         int
	}{
		{testBase, "(objectClass=*)", 100, 252},
		{testBase, "(objectClass=*)", 1, 252},
		{"ou=users," + testBase, "(uid=*)", 7, 250},
		{testBase, "(quota>=200)", 10, 50},
		{testBase, "(uid=user00*)", 3, 100},
	} {
		res, err := c.SearchWithPaging(goldap.NewSearchRequest(tc.base, goldap.ScopeWholeSubtree, 0, 0, 0, false, tc.filter, []string{"1.1"}, nil), tc.size)
		if err != nil {
			t.Fatalf("%s: %v", tc.filter, err)
		}
		seen := map[string]bool{}
		for _, e := range res.Entries {
			if seen[e.DN] {
				t.Errorf("%s: %s twice", tc.filter, e.DN)
			}
			seen[e.DN] = true
		}
		if len(seen) != tc.want {
			t.Errorf("%s page %d: %d entries, want %d", tc.filter, tc.size, len(seen), tc.want)
		}
	}
	// Each page of a full scan reads only its own users (plus one to know
	// there are more).
	cs.scanned.Store(0)
	pc := goldap.NewControlPaging(100)
	req := goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, []goldap.Control{pc})
	res, err := c.Search(req)
	if err != nil || len(res.Entries) != 100 || cs.scanned.Load() != 101 {
		t.Fatalf("first page: %v, scanned %d", err, cs.scanned.Load())
	}
	cookie := goldap.FindControl(res.Controls, goldap.ControlTypePaging).(*goldap.ControlPaging).Cookie
	if len(cookie) == 0 {
		t.Fatal("no cookie")
	}
	// A cookie belongs to its search.
	bad := goldap.NewControlPaging(100)
	bad.SetCookie(cookie)
	_, err = c.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 0, false, "(mail=*)", nil, []goldap.Control{bad}))
	wantCode(t, err, goldap.LDAPResultUnwillingToPerform)
	bad.SetCookie([]byte("garbage"))
	_, err = c.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, []goldap.Control{bad}))
	wantCode(t, err, goldap.LDAPResultUnwillingToPerform)
	// Page size 0 abandons the search.
	stop := goldap.NewControlPaging(0)
	stop.SetCookie(cookie)
	res, err = c.Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, []goldap.Control{stop}))
	if err != nil || len(res.Entries) != 0 {
		t.Errorf("abandon: %v", err)
	}
	// The cookie survives a new connection.
	pc.SetCookie(cookie)
	res, err = h.dial().Search(req)
	if err != nil || len(res.Entries) != 100 || res.Entries[0].DN != userDN("user0100@example.com") {
		t.Errorf("second page elsewhere: %v %v", err, dns(res.Entries)[:1])
	}
}

// TestPagedSizeLimit: a size limit holds for the whole paged search, not
// for each page; a cookie of the earlier format (no count) is still read.
func TestPagedSizeLimit(t *testing.T) {
	h := start(t, options{cfg: Config{AnonymousRead: true}})
	fill(h, 50)
	c := h.dial()
	pc := goldap.NewControlPaging(7)
	req := goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 20, 0, false, "(uid=*)", []string{"1.1"}, []goldap.Control{pc})
	total := 0
	for page := 0; ; page++ {
		res, err := c.Search(req)
		if res != nil {
			total += len(res.Entries)
		}
		if err != nil {
			wantCode(t, err, goldap.LDAPResultSizeLimitExceeded)
			break
		}
		cookie := goldap.FindControl(res.Controls, goldap.ControlTypePaging).(*goldap.ControlPaging).Cookie
		if len(cookie) == 0 || page > 10 {
			t.Fatalf("page %d: the search ended without sizeLimitExceeded, %d entries", page, total)
		}
		pc.SetCookie(cookie)
	}
	if total != 20 {
		t.Errorf("%d entries over all pages, want the size limit's 20", total)
	}

	m := &gldap.SearchMessage{BaseDN: "ou=users," + testBase, Scope: gldap.SingleLevel, Filter: "(uid=*)"}
	hash := searchHash(m)
	v1 := binary.BigEndian.AppendUint32([]byte{1}, hash)
	v1 = append(v1, phaseUsers)
	v1 = append(v1, "user0010@example.com"...)
	cur, sent, ok := parseCookie(v1, hash)
	if !ok || cur.after != "user0010@example.com" || sent != 0 {
		t.Errorf("version 1 cookie: %+v %d %v", cur, sent, ok)
	}
	cur, sent, ok = parseCookie(cursor{phase: phaseUsers, after: "x@y"}.cookie(hash, 42), hash)
	if !ok || cur.after != "x@y" || sent != 42 {
		t.Errorf("round trip: %+v %d %v", cur, sent, ok)
	}
	for _, bad := range [][]byte{v1[:5], {cookieVersion, 0, 0, 0, 0}, append([]byte{3}, v1[1:]...)} {
		if _, _, ok := parseCookie(bad, hash); ok {
			t.Errorf("cookie %x accepted", bad)
		}
	}
}

func TestCriticalControl(t *testing.T) {
	h := start(t, options{cfg: Config{AnonymousRead: true}})
	c := h.dial()
	ctl := goldap.NewControlString("1.2.3.4.5", true, "")
	_, err := c.Search(goldap.NewSearchRequest(testBase, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, []goldap.Control{ctl}))
	wantCode(t, err, goldap.LDAPResultUnavailableCriticalExtension)
	// Not critical: ignored.
	ctl = goldap.NewControlString("1.2.3.4.5", false, "")
	_, err = c.Search(goldap.NewSearchRequest(testBase, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, []goldap.Control{ctl}))
	wantCode(t, err, goldap.LDAPResultSuccess)
	// A control type the LDAP library knows but the directory does not
	// implement is refused when critical too (its type cannot carry the
	// criticality, which used to be lost on decoding).
	showDeleted := goldap.NewControlString(goldap.ControlTypeMicrosoftShowDeleted, true, "")
	_, err = c.Search(goldap.NewSearchRequest(testBase, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, []goldap.Control{showDeleted}))
	wantCode(t, err, goldap.LDAPResultUnavailableCriticalExtension)
	showDeleted.Criticality = false
	_, err = c.Search(goldap.NewSearchRequest(testBase, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, []goldap.Control{showDeleted}))
	wantCode(t, err, goldap.LDAPResultSuccess)
	// Extended operations see their controls.
	_, err = c.WhoAmI([]goldap.Control{goldap.NewControlString("1.2.3.4.5", true, "")})
	wantCode(t, err, goldap.LDAPResultUnavailableCriticalExtension)
	_, err = c.WhoAmI([]goldap.Control{goldap.NewControlString("1.2.3.4.5", false, "")})
	wantCode(t, err, goldap.LDAPResultSuccess)
}

func TestCompare(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "quota", "10")
	a := h.admin()
	for _, tc := range []struct {
		dn, attr, value string
		want            bool
		code            uint16
	}{
		{userDN("alice@example.com"), "quota", "10", true, 0},
		{userDN("alice@example.com"), "quota", "11", false, 0},
		{userDN("alice@example.com"), "MAIL", "ALICE@example.com", true, 0},
		{userDN("alice@example.com"), "objectClass", "inetOrgPerson", true, 0},
		{userDN("alice@example.com"), "tohost", "x", false, goldap.LDAPResultNoSuchAttribute},
		{userDN("alice@example.com"), "userPassword", "pw-alice@example.com", false, goldap.LDAPResultInsufficientAccessRights},
		{userDN("nobody@example.com"), "uid", "x", false, goldap.LDAPResultNoSuchObject},
		{"ou=users," + testBase, "ou", "users", true, 0},
		{"", "supportedLDAPVersion", "3", true, 0},
		{"bad", "uid", "x", false, goldap.LDAPResultInvalidDNSyntax},
	} {
		got, err := a.Compare(tc.dn, tc.attr, tc.value)
		if tc.code != 0 {
			wantCode(t, err, tc.code)
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("compare %s %s=%s: %v, %v", tc.dn, tc.attr, tc.value, got, err)
		}
	}
	// A user compares on their own entry.
	c := h.bound(userDN("alice@example.com"), "pw-alice@example.com")
	if ok, err := c.Compare(userDN("alice@example.com"), "quota", "10"); !ok || err != nil {
		t.Errorf("own compare: %v %v", ok, err)
	}
}

// fillN adds n users quickly, for tests that need many.
func fillN(t testing.TB, h *harness, n int) {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("user%07d@domain%02d.example", i, i%100)
		if _, err := h.svc.Set(ctx, name, "{SSHA}x", []directory.Field{{Label: "tohost", Value: "backend1.example"}}); err != nil {
			t.Fatal(err)
		}
	}
}

// A one-level search under a user returns nothing, but its base must exist
// like any other (RFC 4511 4.5.1.1): noSuchObject for a missing user.
func TestOneLevelUnderMissingUser(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	a := h.admin()
	es, err := search(t, a, userDN("alice@example.com"), goldap.ScopeSingleLevel, "(objectClass=*)")
	if err != nil || len(es) != 0 {
		t.Errorf("under alice: %v, %v", dns(es), err)
	}
	for _, base := range []string{userDN("nobody@example.com"), userDN("bad name")} {
		_, err = search(t, a, base, goldap.ScopeSingleLevel, "(objectClass=*)")
		wantCode(t, err, goldap.LDAPResultNoSuchObject)
		if le := err.(*goldap.Error); le.MatchedDN != "ou=users,"+testBase {
			t.Errorf("%s: matched %q", base, le.MatchedDN)
		}
	}
}
