package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPostfixLDAPMaps runs docs/postfix.md's main.cf lines and LDAP tables
// with postmap against a real directory, as Postfix's lookups would: an
// address of the directory exists and its transport is LMTP to the host
// in its mailHost (changed through TCPAuth, the next lookup sees it), an
// unknown address is not found, and postconf takes the main.cf lines
// without a warning.
func TestPostfixLDAPMaps(t *testing.T) {
	// Where Debian's postfix and postfix-ldap put them (/usr/sbin is not
	// on every user's PATH).
	postmap, postconf := "/usr/sbin/postmap", "/usr/sbin/postconf"
	for _, f := range []string{postmap, postconf, "/usr/lib/postfix/postfix-ldap.so"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run scripts/test-services.sh (it installs postfix and postfix-ldap)", err)
		}
	}
	d, ldapAddr := startLDAPDirectory(t)
	c := dial(t, d.addr)
	c.expect("set alice@example.com pw-a tohost=127.0.0.2", "+OK alice@example.com added to database")
	c.expect("set bob@example.net pw-b tohost=backend2.example", "+OK bob@example.net added to database")

	dir := t.TempDir()
	server := func(name string) string {
		return substitute(t, exampleConfig(t, "postfix.md", name),
			"ldap://dir1.example:3389 ldap://dir2.example:3389", "ldap://"+ldapAddr,
			"bind_pw = CHANGE-ME", "bind_pw = "+postfixReaderPassword)
	}
	mailboxes := writeConf(t, dir, "tohost-mailboxes.cf", server("postfix-mailboxes.cf"))
	transport := writeConf(t, dir, "tohost-transport.cf", server("postfix-transport.cf"))
	writeConf(t, dir, "main.cf", substitute(t, exampleConfig(t, "postfix.md", "postfix-main.cf"),
		"/etc/postfix/tohost-mailboxes.cf", mailboxes,
		"/etc/postfix/tohost-transport.cf", transport))

	// postconf -c dir: the main.cf above, and Postfix's defaults for the
	// rest; no service of master.cf refers to a parameter.
	writeConf(t, dir, "master.cf", "")
	out, err := exec.Command(postconf, "-c", dir, "-n").CombinedOutput()
	if err != nil || strings.Contains(string(out), "warning") {
		t.Fatalf("postconf -n: %v\n%s", err, out)
	}
	param := func(name string) string {
		out, err := exec.Command(postconf, "-c", dir, "-h", name).CombinedOutput()
		if err != nil {
			t.Fatalf("postconf %s: %v\n%s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// query looks key up in the table main.cf names for param, as Postfix
	// does; "" is not found.
	query := func(param, key string) string {
		t.Helper()
		out, err := exec.Command(postmap, "-c", dir, "-q", key, param).CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 1 && len(out) == 0 {
			return "" // postmap's "not found"
		}
		if err != nil {
			t.Fatalf("postmap -q %s %s: %v\n%s", key, param, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	mailboxMaps, transportMaps := param("virtual_mailbox_maps"), param("transport_maps")
	for _, tc := range []struct{ maps, key, want string }{
		{mailboxMaps, "alice@example.com", "alice@example.com"},
		{mailboxMaps, "Bob@Example.NET", "bob@example.net"},
		{mailboxMaps, "nobody@example.com", ""},
		{transportMaps, "alice@example.com", "lmtp:[127.0.0.2]:24"},
		{transportMaps, "bob@example.net", "lmtp:[backend2.example]:24"},
		{transportMaps, "nobody@example.com", ""},
		// transport_maps is also asked for the domain alone.
		{transportMaps, "example.com", ""},
	} {
		if got := query(tc.maps, tc.key); got != tc.want {
			t.Errorf("postmap -q %s %s = %q, want %q", tc.key, filepath.Base(tc.maps), got, tc.want)
		}
	}
	c.expect("set alice@example.com (NULL) tohost=127.0.0.3", "+OK alice@example.com added to database")
	if got := query(transportMaps, "alice@example.com"); got != "lmtp:[127.0.0.3]:24" {
		t.Errorf("after the move alice's transport is %q", got)
	}
}
