package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/internal/testservices"
)

// The tests in dovecot_test.go and postfix_test.go run the configuration
// files under docs/examples/ as the docs pages show them, with only
// addresses, ports and paths changed to this test's.

// exampleConfig returns docs/examples/name after checking that docs/page
// shows it verbatim: what a reader copies is what the test runs.
func exampleConfig(t *testing.T, page, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", page))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(b)) {
		t.Fatalf("docs/%s does not show docs/examples/%s verbatim", page, name)
	}
	return string(b)
}

// substitute replaces each old string of pairs (old, new, old, new, ...)
// in text. An old string that is not there fails the test, so the test
// notices an example that changed under it instead of running it with the
// example's own addresses.
func substitute(t *testing.T, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("the example no longer contains %q", pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	return text
}

// The read-only accounts the examples bind as, as the docs pages start the
// directory with them, and the passwords the tests put in place of the
// examples' CHANGE-ME.
const (
	dovecotReaderDN       = "cn=dovecot,dc=tohost"
	dovecotReaderPassword = "dovecot-reader-pw"
	postfixReaderDN       = "cn=postfix,dc=tohost"
	postfixReaderPassword = "postfix-reader-pw"
)

// startLDAPDirectory runs a directory serving TCPAuth and LDAP (base
// dc=tohost) as the docs pages run it: with the Dovecot and Postfix reader
// accounts, each password in its file, and no anonymous reads, so an
// example passes only by binding as its reader. It returns the directory
// with its LDAP address.
func startLDAPDirectory(t *testing.T) (*daemon, string) {
	t.Helper()
	secrets := t.TempDir()
	args := []string{"--ldap-addr", freeAddr(t)}
	for _, r := range []struct{ dn, password, file string }{
		{dovecotReaderDN, dovecotReaderPassword, "dovecot-reader"},
		{postfixReaderDN, postfixReaderPassword, "postfix-reader"},
	} {
		file := filepath.Join(secrets, r.file)
		if err := os.WriteFile(file, []byte(r.password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--ldap-reader-dn", r.dn, "--ldap-reader-password-file", file)
	}
	d := startDirectory(t, t.TempDir(), args...)
	t.Cleanup(func() {
		if t.Failed() {
			d.kill() // its log is written no more
			t.Logf("directory log:\n%s", d.log)
		}
	})
	ldapAddr := args[1]
	// Without a bind no user can be read: what the examples read, they
	// read as their reader.
	l, err := ldap.DialURL("ldap://" + ldapAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.Search(ldap.NewSearchRequest("ou=users,dc=tohost", ldap.ScopeSingleLevel, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=tohostUser)", []string{"mail"}, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Fatalf("an anonymous search: %v, want insufficientAccessRights", err)
	}
	return d, ldapAddr
}

// worldDir makes a folder that the mail and dovecot users can enter: the
// test's own temporary folders are private to root.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tohost-example")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeConf writes text to dir/name and returns the path.
func writeConf(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dovecot is a private Dovecot master run in the foreground from a folder
// of its own, serving IMAP on 127.0.0.1.
type dovecot struct {
	dir, conf, imap string
	cmd             *exec.Cmd
}

// needDovecot fails the test when Dovecot cannot be run here.
func needDovecot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a private Dovecot is started as root (it switches to the dovecot and mail users)")
	}
	for _, f := range []string{"/usr/sbin/dovecot", "/usr/bin/doveadm", "/usr/lib/dovecot/imap",
		"/usr/lib/dovecot/modules/auth/libauthdb_ldap.so"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run scripts/test-services.sh (it installs dovecot-core, dovecot-imapd and dovecot-ldap)", err)
		}
	}
}

// startDovecot runs Dovecot with auth (a passdb/userdb include file) and
// the settings a test instance needs around it; mail, if any, goes under
// the homes the userdb gives, as the mail user.
func startDovecot(t *testing.T, dir, auth string) *dovecot {
	t.Helper()
	mail, err := user.Lookup("mail")
	if err != nil {
		t.Fatal(err)
	}
	dc := &dovecot{dir: dir, imap: freeAddr(t)}
	_, port, _ := net.SplitHostPort(dc.imap)
	for _, sub := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Plaintext logins without TLS and no failure delay: a test on
	// loopback. Loopback is a trusted network so that a test can say which
	// client address a login comes from (see imapSession). The rest is the
	// example's.
	dc.conf = writeConf(t, dir, "dovecot.conf", fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_uid = mail
mail_gid = mail
first_valid_uid = %[2]s
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = %[3]s
  }
  inet_listener imaps {
    port = 0
  }
}
!include %[4]s
`, dir, mail.Uid, port, auth))
	dc.cmd = exec.Command("/usr/sbin/dovecot", "-F", "-c", dc.conf)
	out := new(testservices.Buffer)
	dc.cmd.Stdout, dc.cmd.Stderr = out, out
	if err := dc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { dc.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot output:\n%s\ndovecot.log:\n%s", out, log)
		}
		// The master ends its children on SIGTERM.
		dc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			dc.cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot exited: %v\n%s\n%s", dc.cmd.ProcessState, out, log)
		default:
		}
		c, err := net.Dial("tcp", dc.imap)
		if err == nil {
			c.Close()
			return dc
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not start: %v\n%s", err, out)
		}
	}
}

// doveadm runs doveadm against this Dovecot and returns its output.
func (dc *dovecot) doveadm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("/usr/bin/doveadm", append([]string{"-c", dc.conf}, args...)...).CombinedOutput()
	return string(out), err
}

// userdb returns the fields doveadm user prints for name.
func (dc *dovecot) userdb(t *testing.T, name string) map[string]string {
	t.Helper()
	out, err := dc.doveadm(t, "user", name)
	if err != nil {
		t.Fatalf("doveadm user %s: %v\n%s", name, err, out)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			fields[k] = v
		}
	}
	return fields
}

// imapSession logs in at addr and returns the connection and the tagged
// reply to LOGIN. A Dovecot delays each login from an address that failed
// before, doubling up to 15 s; so that a test can try several wrong
// logins without waiting for that, from is the client address the login
// claims to come from (IMAP ID x-originating-ip, believed from a trusted
// network), unless empty.
func dovecotSession(t *testing.T, addr, from, name, pass string) (*conn, string) {
	t.Helper()
	c := dial(t, addr)
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	if from != "" {
		if l := c.command("i", `ID ("x-originating-ip" "`+from+`")`); !strings.HasPrefix(l, "i OK") {
			t.Fatalf("ID: %q", l)
		}
	}
	return c, c.reply("a LOGIN " + name + " " + pass)
}

// command sends an IMAP command with tag and returns the tagged reply,
// skipping untagged ones.
func (c *conn) command(tag, cmd string) string {
	c.t.Helper()
	c.write(tag + " " + cmd + "\r\n")
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return l
		}
	}
}

// mailUser returns the mail user's uid and gid.
func mailUser(t *testing.T) (int, int) {
	t.Helper()
	u, err := user.Lookup("mail")
	if err != nil {
		t.Fatal(err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return uid, gid
}
