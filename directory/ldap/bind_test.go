package ldap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/directory"
)

func TestBindUser(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "name", "Alice Liddell")
	c := h.dial()
	for _, dn := range []string{
		userDN("alice@example.com"),
		"mail=alice@example.com,ou=users," + testBase,
		"UID=Alice@Example.COM, OU=Users, DC=Example, DC=Com", // case and spaces do not matter
		"uid=alice\\40example.com,ou=users," + testBase,       // nor escapes
	} {
		wantCode(t, c.Bind(dn, "pw-alice@example.com"), goldap.LDAPResultSuccess)
	}
}

func TestBindRefusedAlike(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	h.user("suspended@example.com", "status", "suspended")
	c := h.dial()
	var msgs []string
	for _, tc := range []struct{ dn, pw string }{
		{userDN("alice@example.com"), "wrong"},
		{userDN("nobody@example.com"), "pw-nobody@example.com"},
		{userDN("suspended@example.com"), "pw-suspended@example.com"},
		{userDN("bad name@example.com"), "x"},
		{"cn=someone," + testBase, "x"},
		{"uid=alice@example.com,dc=elsewhere", "pw-alice@example.com"},
		{testAdminDN, "wrong"},
		{"", "password-without-name"},
	} {
		err := c.Bind(tc.dn, tc.pw)
		wantCode(t, err, goldap.LDAPResultInvalidCredentials)
		var le *goldap.Error
		errors.As(err, &le)
		msgs = append(msgs, le.Err.Error())
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Errorf("refusals differ: %q", msgs)
		}
	}
}

func TestBindErrors(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	c := h.dial()
	wantCode(t, c.Bind("not a dn", "x"), goldap.LDAPResultInvalidDNSyntax)
	wantCode(t, c.UnauthenticatedBind(userDN("alice@example.com")), goldap.LDAPResultUnwillingToPerform)
	wantCode(t, c.ExternalBind(), goldap.LDAPResultAuthMethodNotSupported)
	_, err := c.DigestMD5Bind(&goldap.DigestMD5BindRequest{Username: "alice", Password: "x"})
	wantCode(t, err, goldap.LDAPResultAuthMethodNotSupported)
	// The connection survives all of them.
	wantCode(t, c.Bind(userDN("alice@example.com"), "pw-alice@example.com"), goldap.LDAPResultSuccess)
}

func TestBindAnonymous(t *testing.T) {
	h := start(t, adminConfig())
	c := h.dial()
	wantCode(t, c.UnauthenticatedBind(""), goldap.LDAPResultSuccess)
	_, err := search(t, c, testBase, goldap.ScopeWholeSubtree, "(objectClass=*)")
	wantCode(t, err, goldap.LDAPResultInsufficientAccessRights)
}

func TestBindAdmin(t *testing.T) {
	h := start(t, adminConfig())
	c := h.dial()
	wantCode(t, c.Bind(testAdminDN, testAdminPW), goldap.LDAPResultSuccess)
	wantCode(t, c.Bind("CN=Admin,DC=example,DC=com", testAdminPW), goldap.LDAPResultSuccess)

	// No admin password: no admin at all.
	h2 := start(t, options{})
	wantCode(t, h2.dial().UnauthenticatedBind(testAdminDN), goldap.LDAPResultUnwillingToPerform)
	wantCode(t, h2.dial().Bind(testAdminDN, "anything"), goldap.LDAPResultInvalidCredentials)
}

// A failed bind leaves the connection anonymous (RFC 4511 4.2.1).
func TestFailedBindDropsIdentity(t *testing.T) {
	h := start(t, adminConfig())
	c := h.admin()
	wantCode(t, c.Bind(testAdminDN, "wrong"), goldap.LDAPResultInvalidCredentials)
	res, err := c.WhoAmI(nil)
	if err != nil || res.AuthzID != "" {
		t.Fatalf("whoami after failed bind: %q, %v", res, err)
	}
}

// failingStore fails every read and write like a database that is down.
type failingStore struct{ directory.Store }

func (failingStore) Update(context.Context, string, directory.UpdateFunc) (*directory.User, error) {
	return nil, errDown
}

func (failingStore) Get(context.Context, string) (*directory.User, error) {
	return nil, errDown
}

func (failingStore) Search(context.Context, directory.Match, func(*directory.User) error) error {
	return errDown
}

var errDown = errors.Join(directory.ErrUnavailable, errors.New("connection refused"))

// An outage is "unavailable", never a wrong password or "no such user".
func TestUnavailable(t *testing.T) {
	h := start(t, options{cfg: Config{AdminPassword: testAdminPW, AnonymousRead: true},
		wrap: func(s directory.Store) directory.Store { return failingStore{s} }})
	c := h.dial()
	wantCode(t, c.Bind(userDN("alice@example.com"), "pw"), goldap.LDAPResultUnavailable)
	for _, f := range []string{"(uid=alice@example.com)", "(cn=alice)"} {
		_, err := search(t, c, testBase, goldap.ScopeWholeSubtree, f)
		wantCode(t, err, goldap.LDAPResultUnavailable)
	}
	_, err := search(t, c, userDN("alice@example.com"), goldap.ScopeBaseObject, "(objectClass=*)")
	wantCode(t, err, goldap.LDAPResultUnavailable)
	_, err = c.Compare(userDN("alice@example.com"), "cn", "x")
	wantCode(t, err, goldap.LDAPResultUnavailable)
	a := h.admin()
	mod := goldap.NewModifyRequest(userDN("alice@example.com"), nil)
	mod.Replace("quota", []string{"1"})
	err = a.Modify(mod)
	wantCode(t, err, goldap.LDAPResultUnavailable)
	if !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("message %q", err)
	}
}

// timeoutStore fails like postgres when its query timeout expires: the
// error wraps both ErrUnavailable and context.DeadlineExceeded.
type timeoutStore struct{ directory.Store }

var errTimeout = fmt.Errorf("%w: postgres: %w", directory.ErrUnavailable, context.DeadlineExceeded)

func (timeoutStore) Get(context.Context, string) (*directory.User, error) {
	return nil, errTimeout
}

func (timeoutStore) Search(context.Context, directory.Match, func(*directory.User) error) error {
	return errTimeout
}

// A store timeout is an outage ("unavailable"), not the client's time
// limit: no search here set one.
func TestStoreTimeoutIsUnavailable(t *testing.T) {
	h := start(t, options{cfg: Config{AdminPassword: testAdminPW, AnonymousRead: true},
		wrap: func(s directory.Store) directory.Store { return timeoutStore{s} }})
	c := h.dial()
	wantCode(t, c.Bind(userDN("alice@example.com"), "pw"), goldap.LDAPResultUnavailable)
	_, err := search(t, c, testBase, goldap.ScopeWholeSubtree, "(cn=alice)")
	wantCode(t, err, goldap.LDAPResultUnavailable)
	_, err = c.Compare(userDN("alice@example.com"), "cn", "x")
	wantCode(t, err, goldap.LDAPResultUnavailable)
}
