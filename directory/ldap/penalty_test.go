package ldap

import (
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/internal/penalty"
)

// TestBindPenalty: after a wrong password, binds as that name from that
// client are refused unchecked (the right password too) until the window
// ends; the admin's and other users' binds are counted apart.
func TestBindPenalty(t *testing.T) {
	o := adminConfig()
	o.cfg.Penalty = penalty.New[string](penalty.Config{Base: time.Hour, Max: time.Hour})
	h := start(t, o)
	h.user("a@x")
	h.user("b@x")
	c := h.dial()
	userDN := func(n string) string { return "uid=" + n + ",ou=users," + testBase }
	wantBind := func(dn, pw string, code uint16) {
		t.Helper()
		err := c.Bind(dn, pw)
		if code == goldap.LDAPResultSuccess {
			if err != nil {
				t.Fatalf("bind %s: %v", dn, err)
			}
			return
		}
		if !goldap.IsErrorWithCode(err, code) {
			t.Fatalf("bind %s: %v, want result %d", dn, err, code)
		}
	}
	wantBind(userDN("a@x"), "wrong", goldap.LDAPResultInvalidCredentials)
	wantBind(userDN("a@x"), "pw-a@x", goldap.LDAPResultInvalidCredentials)
	wantBind("mail=A@X,ou=users,"+testBase, "pw-a@x", goldap.LDAPResultInvalidCredentials)
	wantBind(userDN("b@x"), "pw-b@x", goldap.LDAPResultSuccess)
	wantBind(testAdminDN, testAdminPW, goldap.LDAPResultSuccess)
	wantBind(testAdminDN, "wrong", goldap.LDAPResultInvalidCredentials)
	wantBind(testAdminDN, testAdminPW, goldap.LDAPResultInvalidCredentials)
	wantBind(userDN("b@x"), "pw-b@x", goldap.LDAPResultSuccess)
}
