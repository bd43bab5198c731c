package integration

import (
	"bufio"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// dialConnFrom opens a TCPAuth connection from a given loopback address.
func dialConnFrom(t *testing.T, from, addr string) *conn {
	t.Helper()
	nc, err := dialFrom(from, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &conn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// TestAuditLines: every write leaves one audit line naming the client
// and the admin: TCPAuth's "secret" or "admin-network", LDAP's bound DN,
// the import's local account. The lines are what docs/logs.md shows.
func TestAuditLines(t *testing.T) {
	ldapAddr := freeAddr(t)
	dataDir := t.TempDir()
	d := startDirectory(t, dataDir, "--secret", "s3", "--admin-allow", "127.0.0.2/32",
		"--ldap-addr", ldapAddr, "--ldap-admin-password", "adminpw")

	bySecret := dialConnFrom(t, "127.0.0.1", d.addr)
	bySecret.expect("auth s3", "+OK")
	bySecret.expect("set a@x pw", "+OK a@x added to database")
	bySecret.expect("rename a@x b@x", "+OK b@x renamed")
	byNetwork := dialConnFrom(t, "127.0.0.2", d.addr)
	byNetwork.expect("auth s3", "+OK")
	byNetwork.expect("del b@x", "+OK b@x deleted")
	byNetwork.expect("del b@x", "-ERR b@x does not exist") // no change, no line

	l, err := ldap.DialURL("ldap://" + ldapAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind("cn=admin,dc=tohost", "adminpw"); err != nil {
		t.Fatal(err)
	}
	add := ldap.NewAddRequest("uid=c@x,ou=users,dc=tohost", nil)
	add.Attribute("userPassword", []string{"pw"})
	mod := ldap.NewModifyRequest("uid=c@x,ou=users,dc=tohost", nil)
	mod.Replace("mailHost", []string{"backend1"})
	for _, err := range []error{
		l.Add(add),
		l.Modify(mod),
		func() error {
			_, err := l.PasswordModify(ldap.NewPasswordModifyRequest("uid=c@x,ou=users,dc=tohost", "", "pw2"))
			return err
		}(),
		l.ModifyDN(ldap.NewModifyDNRequest("uid=c@x,ou=users,dc=tohost", "uid=e@x", true, "")),
		l.Del(ldap.NewDelRequest("uid=e@x,ou=users,dc=tohost", nil)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	d.kill()

	csv := writeFile(t, t.TempDir(), "users.csv", "user,password\nf@x,pw\n")
	code, _, stderr := tohost(t, "import", "--data-dir", dataDir, "--password-scheme", "SSHA", "--progress", "none", csv)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}

	admin := `by="cn=admin,dc=tohost"`
	want := []string{
		`proto=tcpauth op=set user=a@x client=127.0.0.1 by=secret`,
		`proto=tcpauth op=rename user=a@x to=b@x client=127.0.0.1 by=secret`,
		`proto=tcpauth op=del user=b@x client=127.0.0.2 by=admin-network`,
		`proto=ldap op=add user=c@x client=127.0.0.1 ` + admin,
		`proto=ldap op=modify user=c@x client=127.0.0.1 ` + admin,
		`proto=ldap op=passwd user=c@x client=127.0.0.1 ` + admin,
		`proto=ldap op=modifydn user=c@x to=e@x client=127.0.0.1 ` + admin,
		`proto=ldap op=delete user=e@x client=127.0.0.1 ` + admin,
	}
	got := auditLines(d.log.String())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	imp := auditLines(stderr)
	if len(imp) != 1 || !regexp.MustCompile(`^proto=cli op=import user=`+regexp.QuoteMeta(filepath.ToSlash(csv))+
		` by=\S+ store="embedded store .*" mode=upsert created=1 updated=0 deleted=0 rejected=0$`).MatchString(imp[0]) {
		t.Errorf("import's audit line: %q\n%s", imp, stderr)
	}
}

// auditLines returns the audit lines of log, from proto= on.
func auditLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, " level=INFO msg=audit "); i >= 0 {
			out = append(out, l[i+len(" level=INFO msg=audit "):])
		}
	}
	return out
}
