package ldap

import (
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/internal/penalty"
)

// TestBindPenalty: after a wrong password, the next bind as that name
// from that client waits out the delay (then the right password works);
// other names are not held back.
func TestBindPenalty(t *testing.T) {
	const base = 200 * time.Millisecond
	o := adminConfig()
	o.cfg.Penalty = penalty.New[string](penalty.Config{Base: base, Max: time.Second})
	h := start(t, o)
	h.user("a@x")
	h.user("b@x")
	c := h.dial()
	userDN := func(n string) string { return "uid=" + n + ",ou=users," + testBase }
	bind := func(dn, pw string) (time.Duration, error) {
		start := time.Now()
		err := c.Bind(dn, pw)
		return time.Since(start), err
	}
	if _, err := bind(userDN("a@x"), "wrong"); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := bind(userDN("b@x"), "pw-b@x"); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if took, err := bind("mail=A@X,ou=users,"+testBase, "pw-a@x"); err != nil || took < base {
		t.Fatalf("the right password after a wrong one: %v after %v, want success after the %v delay", err, took, base)
	}
	if _, err := bind(testAdminDN, "wrong"); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong admin password: %v", err)
	}
	if took, err := bind(testAdminDN, testAdminPW); err != nil || took < base {
		t.Fatalf("the admin after a wrong password: %v after %v", err, took)
	}
}
