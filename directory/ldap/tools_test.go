package ldap

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// These tests run the OpenLDAP client tools (Debian package ldap-utils)
// against the server: what mail software built on libldap sends. They are
// required, never skipped: scripts/test-services.sh installs them.

// tool runs an ldap-utils command with no configuration file (LDAPNOINIT
// would also ignore the LDAPTLS_* variables), and returns its output and
// exit code.
func tool(t *testing.T, env []string, stdin string, name string, args ...string) (string, int) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed: the LDAP tests require the OpenLDAP client tools (Debian package ldap-utils); `make test` installs them through scripts/test-services.sh", name)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "HOME="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

func toolOK(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	out, code := tool(t, nil, stdin, name, args...)
	if code != 0 {
		t.Fatalf("%s %q: exit %d\n%s", name, args, code, out)
	}
	return out
}

var dnLine = regexp.MustCompile(`(?m)^dn: (.*)$`)

func TestToolsSearch(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com", "tohost", "backend1.example", "name", "Alice Liddell")
	url := "ldap://" + h.addr
	out := toolOK(t, "", "ldapsearch", "-x", "-H", url, "-b", "", "-s", "base", "+")
	if !strings.Contains(out, "namingContexts: "+testBase) || !strings.Contains(out, "supportedLDAPVersion: 3") {
		t.Errorf("root DSE:\n%s", out)
	}
	out = toolOK(t, "", "ldapsearch", "-x", "-H", url, "-D", userDN("alice@example.com"), "-w", "pw-alice@example.com",
		"-b", testBase, "(uid=alice@example.com)", "mail", "mailHost", "cn")
	for _, want := range []string{"dn: " + userDN("alice@example.com"), "mail: alice@example.com", "mailHost: backend1.example", "cn: Alice Liddell"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	// Anonymous without anonymous reads: refused (50).
	if out, code := tool(t, nil, "", "ldapsearch", "-x", "-H", url, "-b", testBase, "(uid=*)"); code != 50 {
		t.Errorf("anonymous search: exit %d\n%s", code, out)
	}
	// ldapcompare
	// ldapcompare exits with the result code: compareTrue (6).
	out, code := tool(t, nil, "", "ldapcompare", "-x", "-H", url, "-D", testAdminDN, "-w", testAdminPW, userDN("alice@example.com"), "mailHost:backend1.example")
	if code != 6 || !strings.Contains(out, "TRUE") {
		t.Errorf("ldapcompare: exit %d %s", code, out)
	}
}

func TestToolsPagedSearch(t *testing.T) {
	h := start(t, adminConfig())
	fill(h, 1000)
	out := toolOK(t, "", "ldapsearch", "-x", "-LLL", "-H", "ldap://"+h.addr, "-D", testAdminDN, "-w", testAdminPW,
		"-E", "pr=100/noprompt", "-b", "ou=users,"+testBase, "-s", "one", "(objectClass=*)", "1.1")
	seen := map[string]int{}
	for _, m := range dnLine.FindAllStringSubmatch(out, -1) {
		seen[m[1]]++
	}
	if len(seen) != 1000 {
		t.Errorf("%d distinct entries, want 1000", len(seen))
	}
	for i := 0; i < 1000; i++ {
		if dn := userDN(fmt.Sprintf("user%04d@example.com", i)); seen[dn] != 1 {
			t.Fatalf("%s returned %d times", dn, seen[dn])
		}
	}
}

func TestToolsWhoAmIAndPasswd(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	url := "ldap://" + h.addr
	alice := userDN("alice@example.com")
	out := toolOK(t, "", "ldapwhoami", "-x", "-H", url, "-D", alice, "-w", "pw-alice@example.com")
	if strings.TrimSpace(out) != "dn:"+alice {
		t.Errorf("ldapwhoami: %q", out)
	}
	if out, code := tool(t, nil, "", "ldapwhoami", "-x", "-H", url, "-D", alice, "-w", "wrong"); code != 49 {
		t.Errorf("wrong password: exit %d\n%s", code, out)
	}
	if out, code := tool(t, nil, "", "ldapwhoami", "-x", "-H", url, "-D", userDN("nobody@example.com"), "-w", "x"); code != 49 {
		t.Errorf("unknown user: exit %d\n%s", code, out)
	}
	// The user changes their own password; then the admin makes one up.
	toolOK(t, "", "ldappasswd", "-x", "-H", url, "-D", alice, "-w", "pw-alice@example.com", "-a", "pw-alice@example.com", "-s", "changed")
	toolOK(t, "", "ldapwhoami", "-x", "-H", url, "-D", alice, "-w", "changed")
	out = toolOK(t, "", "ldappasswd", "-x", "-H", url, "-D", testAdminDN, "-w", testAdminPW, alice)
	m := regexp.MustCompile(`New password: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ldappasswd: %q", out)
	}
	toolOK(t, "", "ldapwhoami", "-x", "-H", url, "-D", alice, "-w", m[1])
}

func TestToolsModify(t *testing.T) {
	h := start(t, adminConfig())
	url := "ldap://" + h.addr
	admin := []string{"-x", "-H", url, "-D", testAdminDN, "-w", testAdminPW}
	ldif := `dn: uid=carol@example.com,ou=users,dc=example,dc=com
changetype: add
objectClass: inetOrgPerson
objectClass: tohostUser
uid: carol@example.com
mail: carol@example.com
cn: Carol
sn: Carol
mailHost: backend2.example
userPassword: carol-pw

dn: uid=carol@example.com,ou=users,dc=example,dc=com
changetype: modify
replace: mailHost
mailHost: backend4.example
-
add: quota
quota: 1024

dn: uid=carol@example.com,ou=users,dc=example,dc=com
changetype: modrdn
newrdn: uid=caroline@example.com
deleteoldrdn: 1
`
	toolOK(t, ldif, "ldapmodify", admin...)
	u := h.lookup("caroline@example.com")
	if u.Tohost() != "backend4.example" || u.Get("quota") != "1024" || u.Get("name") != "Carol" {
		t.Errorf("after ldapmodify: %+v", u)
	}
	toolOK(t, "", "ldapwhoami", "-x", "-H", url, "-D", userDN("caroline@example.com"), "-w", "carol-pw")
	toolOK(t, "", "ldapdelete", append(admin, userDN("caroline@example.com"))...)
	if out, code := tool(t, nil, "", "ldapdelete", append(admin, userDN("caroline@example.com"))...); code != 32 {
		t.Errorf("second delete: exit %d\n%s", code, out)
	}
	// A user may not write.
	h.user("alice@example.com")
	mod := "dn: " + userDN("alice@example.com") + "\nchangetype: modify\nreplace: quota\nquota: 1\n"
	if out, code := tool(t, nil, mod, "ldapmodify", "-x", "-H", url, "-D", userDN("alice@example.com"), "-w", "pw-alice@example.com"); code != 50 {
		t.Errorf("user modify: exit %d\n%s", code, out)
	}
}

func TestToolsTLS(t *testing.T) {
	srv, _ := testTLS(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"LDAPTLS_CACERT=" + ca, "LDAPTLS_REQCERT=demand"}
	h := start(t, options{cfg: Config{AdminPassword: testAdminPW, TLS: srv}})
	h.user("alice@example.com")
	alice := userDN("alice@example.com")
	out, code := tool(t, env, "", "ldapwhoami", "-x", "-ZZ", "-H", "ldap://"+h.addr, "-D", alice, "-w", "pw-alice@example.com")
	if code != 0 || strings.TrimSpace(out) != "dn:"+alice {
		t.Errorf("StartTLS whoami: exit %d %q", code, out)
	}
	hs := start(t, options{cfg: Config{AdminPassword: testAdminPW, TLS: srv}, tls: true})
	hs.user("alice@example.com")
	out, code = tool(t, env, "", "ldapwhoami", "-x", "-H", "ldaps://"+hs.addr, "-D", alice, "-w", "pw-alice@example.com")
	if code != 0 || strings.TrimSpace(out) != "dn:"+alice {
		t.Errorf("LDAPS whoami: exit %d %q", code, out)
	}
}
