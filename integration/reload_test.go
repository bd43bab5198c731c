package integration

import (
	"bufio"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/internal/testservices"
)

// TestSIGHUPReloads: SIGHUP to a running directory reloads its TLS
// certificate and its secret file: a new client sees the renewed
// certificate and must use the new secret, while a connection opened
// before goes on; a broken certificate keeps the old one, and nothing
// stops.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, secretFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "secret")
	testservices.WriteCert(t, certFile, keyFile, "old.example")
	if err := os.WriteFile(secretFile, []byte("old-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDirectory(t, filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile,
		"--secret-file", secretFile, "--admin-allow", "192.0.2.0/24")

	type tlsConn struct {
		c  *tls.Conn
		r  *bufio.Reader
		cn string
	}
	dialTLS := func() *tlsConn {
		t.Helper()
		c, err := tls.Dial("tcp", d.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return &tlsConn{c, bufio.NewReader(c), c.ConnectionState().PeerCertificates[0].Subject.CommonName}
	}
	ask := func(tc *tlsConn, req string) string {
		t.Helper()
		if _, err := tc.c.Write([]byte(req + "\r\n")); err != nil {
			t.Fatal(err)
		}
		l, err := tc.r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v\n%s", req, err, d.log)
		}
		return strings.TrimRight(l, "\r\n")
	}
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	old := dialTLS()
	if old.cn != "old.example" {
		t.Fatalf("certificate %q", old.cn)
	}
	if got := ask(old, "auth old-secret"); got != "+OK" {
		t.Fatalf("auth old-secret: %q", got)
	}

	testservices.WriteCert(t, certFile, keyFile, "new.example")
	os.WriteFile(secretFile, []byte("new-secret\n"), 0o600)
	hup()
	// The reload runs beside the requests: wait until a new client sees it.
	var c *tlsConn
	for deadline := time.Now().Add(20 * time.Second); ; {
		c = dialTLS()
		if c.cn == "new.example" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP new clients still get %q\n%s", c.cn, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := ask(c, "auth new-secret"); got != "+OK" {
		t.Fatalf("the new secret after the reload: %q", got)
	}
	if got := ask(dialTLS(), "auth old-secret"); got != "-ERR authentication failed" {
		t.Fatalf("the old secret after the reload: %q", got)
	}
	if got := ask(old, "ping"); got != "+OK pong" {
		t.Fatalf("a connection from before the reload: %q", got)
	}

	os.WriteFile(keyFile, []byte("half written"), 0o600)
	hup()
	if got := ask(old, "ping"); got != "+OK pong" {
		t.Fatalf("after a failed reload: %q", got)
	}
	if c := dialTLS(); c.cn != "new.example" {
		t.Fatalf("a broken certificate replaced the good one: %q", c.cn)
	}
	if d.cmd.ProcessState != nil {
		t.Fatalf("the directory exited\n%s", d.log)
	}
}

// TestLDAPReaderReload: a read-only LDAP account configured by a password
// file reads users and cannot write; after the file changes and a SIGHUP,
// new binds need the new password.
func TestLDAPReaderReload(t *testing.T) {
	dir := t.TempDir()
	readerFile := filepath.Join(dir, "reader")
	if err := os.WriteFile(readerFile, []byte("old-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ldapAddr := freeAddr(t)
	d := startDirectory(t, filepath.Join(dir, "data"), "--ldap-addr", ldapAddr,
		"--ldap-reader-dn", "cn=postfix,dc=tohost", "--ldap-reader-password-file", readerFile)
	c := dial(t, d.addr)
	c.expect("set a@x pw tohost=b1", "+OK a@x added to database")

	bind := func(pw string) (*goldap.Conn, error) {
		l, err := goldap.DialURL("ldap://" + ldapAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, l.Bind("cn=postfix,dc=tohost", pw)
	}
	l, err := bind("old-pw")
	if err != nil {
		t.Fatalf("reader bind: %v", err)
	}
	res, err := l.Search(goldap.NewSearchRequest("ou=users,dc=tohost", goldap.ScopeSingleLevel, goldap.NeverDerefAliases,
		0, 0, false, "(mail=a@x)", []string{"mailHost", "userPassword"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("mailHost") != "b1" || res.Entries[0].GetAttributeValue("userPassword") != "" {
		t.Fatalf("reader search: %v %+v", err, res)
	}
	mod := goldap.NewModifyRequest("uid=a@x,ou=users,dc=tohost", nil)
	mod.Replace("tohost", []string{"b2"})
	if err := l.Modify(mod); !goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights) {
		t.Fatalf("reader modify: %v", err)
	}

	os.WriteFile(readerFile, []byte("new-pw\n"), 0o600)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := bind("new-pw"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new reader password never worked")
		}
	}
	if _, err := bind("old-pw"); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("the old reader password after the reload: %v", err)
	}
}
