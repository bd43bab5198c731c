package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestLDAPSeesTCPAuthWrites: one directory process serves both protocols
// from the same caches; a tohost written over TCPAuth is the mailHost an
// LDAP search returns at once.
func TestLDAPSeesTCPAuthWrites(t *testing.T) {
	ldapAddr, httpAddr := freeAddr(t), freeAddr(t)
	d := startDirectory(t, t.TempDir(), "--ldap-addr", ldapAddr, "--ldap-base", "dc=example,dc=com",
		"--ldap-anonymous-read", "--http-addr", httpAddr)
	c := dial(t, d.addr)
	l, err := ldap.DialURL("ldap://" + ldapAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	search := func() string {
		t.Helper()
		res, err := l.Search(ldap.NewSearchRequest("ou=users,dc=example,dc=com", ldap.ScopeWholeSubtree,
			ldap.NeverDerefAliases, 0, 0, false, "(uid=bob@example.com)", []string{"mailHost"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Entries) != 1 {
			t.Fatalf("%d entries", len(res.Entries))
		}
		return res.Entries[0].GetAttributeValue("mailHost")
	}
	c.expect("set bob@example.com pw tohost=backend1.example", "+OK bob@example.com added to database")
	if got := search(); got != "backend1.example" {
		t.Fatalf("mailHost = %q", got)
	}
	c.expect("set bob@example.com (NULL) tohost=backend2.example", "+OK bob@example.com added to database")
	if got := search(); got != "backend2.example" {
		t.Fatalf("after the TCPAuth write mailHost = %q", got)
	}
	if err := l.Bind("uid=bob@example.com,ou=users,dc=example,dc=com", "pw"); err != nil {
		t.Fatalf("bind with the TCPAuth password: %v", err)
	}
	// Both front ends report to the one /metrics.
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`tohost_ldap_requests_total{op="search"} 2`, `tohost_ldap_requests_total{op="bind"} 1`,
		`tohost_tcpauth_requests_total{command="set",outcome="ok"} 2`, `tohost_directory_users 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
