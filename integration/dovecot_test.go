package integration

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDovecotLDAP runs docs/dovecot.md's configuration for a Dovecot that
// holds the mailboxes: users log in with the password stored in tohost
// (the directory checks it when Dovecot binds as the user), a wrong
// password and a suspended user are refused, and the userdb gives the
// home and quota from the user's entry.
func TestDovecotLDAP(t *testing.T) {
	needDovecot(t)
	d, ldapAddr := startLDAPDirectory(t)
	c := dial(t, d.addr)
	// Written with capitals: Dovecot folds the login name, and the home of a
	// login must be the one an LMTP delivery to alice@example.com uses.
	c.expect("set Alice@Example.com pw-a quota=1000000", "+OK Alice@Example.com added to database")
	c.expect("set carol@example.com pw-c status=suspended", "+OK carol@example.com added to database")
	// A name with characters that are special in a DN: Dovecot escapes
	// them when it makes the DN to bind as.
	c.expect("set d+x=y@example.com pw-d", "+OK d+x=y@example.com added to database")

	dir := worldDir(t)
	vmail := filepath.Join(dir, "vmail")
	if err := os.Mkdir(vmail, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := mailUser(t)
	if err := os.Chown(vmail, uid, gid); err != nil {
		t.Fatal(err)
	}
	ldapConf := writeConf(t, dir, "dovecot-ldap.conf.ext", substitute(t,
		exampleConfig(t, "dovecot.md", "dovecot-ldap.conf.ext"),
		"ldap://dir1.example:3389 ldap://dir2.example:3389", "ldap://"+ldapAddr,
		"dnpass = CHANGE-ME", "dnpass = "+dovecotReaderPassword,
		"/var/vmail/", vmail+"/"))
	auth := writeConf(t, dir, "auth-ldap.conf.ext", substitute(t,
		exampleConfig(t, "dovecot.md", "dovecot-auth-ldap.conf.ext"),
		"/etc/dovecot/dovecot-ldap.conf.ext", ldapConf))
	dc := startDovecot(t, dir, auth)

	s, reply := dovecotSession(t, dc.imap, "", "alice@example.com", "pw-a")
	if !strings.HasPrefix(reply, "a OK") {
		t.Fatalf("alice's login: %q", reply)
	}
	if l := s.command("b", "SELECT INBOX"); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("SELECT INBOX: %q", l)
	}
	if _, err := os.Stat(filepath.Join(vmail, "example.com", "alice", "Maildir")); err != nil {
		t.Errorf("alice's Maildir is not under the userdb's home: %v", err)
	}
	s.command("c", "LOGOUT")
	if _, reply := dovecotSession(t, dc.imap, "", "d+x=y@example.com", "pw-d"); !strings.HasPrefix(reply, "a OK") {
		t.Errorf("d+x=y's login: %q", reply)
	}

	for _, tc := range []struct{ from, name, pass, why string }{
		{"192.0.2.1", "alice@example.com", "wrong", "a wrong password"},
		{"192.0.2.2", "carol@example.com", "pw-c", "a suspended user"},
		{"192.0.2.3", "nobody@example.com", "pw-a", "an unknown user"},
	} {
		if _, reply := dovecotSession(t, dc.imap, tc.from, tc.name, tc.pass); !strings.HasPrefix(reply, "a NO [AUTHENTICATIONFAILED]") {
			t.Errorf("%s logged in: %q", tc.why, reply)
		}
	}

	fields := dc.userdb(t, "alice@example.com")
	if want := filepath.Join(vmail, "example.com", "alice"); fields["home"] != want {
		t.Errorf("userdb home = %q, want %q", fields["home"], want)
	}
	if fields["quota_rule"] != "*:bytes=1000000" {
		t.Errorf("userdb quota_rule = %q, want the tohost quota field", fields["quota_rule"])
	}
	out, err := dc.doveadm(t, "user", "*")
	if err != nil {
		t.Fatalf("doveadm user '*': %v\n%s", err, out)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "Alice@Example.com carol@example.com d+x=y@example.com" {
		t.Errorf("doveadm user '*' lists %q", got)
	}
}

// TestDovecotProxyByMailHost runs docs/dovecot.md's proxy configuration in
// front of two tohost backends, 127.0.0.2 and 127.0.0.3: each user's login
// goes to the backend in its mailHost (a backend refuses the logins of
// another backend's users, and each user reads the message delivered to
// its own), and a wrong password is refused by the proxy.
func TestDovecotProxyByMailHost(t *testing.T) {
	needDovecot(t)
	d, ldapAddr := startLDAPDirectory(t)
	c := dial(t, d.addr)
	// Written with capitals; she logs in as ann@example.com, the name the
	// proxy must pass on.
	c.expect("set Ann@Example.com pw-ann tohost=127.0.0.2", "+OK Ann@Example.com added to database")
	c.expect("set ben@example.com pw-ben tohost=127.0.0.3", "+OK ben@example.com added to database")

	ports := sharedPorts(t, 2, "127.0.0.2", "127.0.0.3") // SMTP, IMAP
	root := t.TempDir()
	for _, h := range []string{"127.0.0.2", "127.0.0.3"} {
		addr := func(i int) string { return net.JoinHostPort(h, strconv.Itoa(ports[i])) }
		b := &e2eProc{name: "backend " + h, ready: []string{addr(0), addr(1)},
			args: []string{"backend", "--name", h, "--directory", d.addr, "--mail-dir", filepath.Join(root, h),
				"--smtp-addr", addr(0), "--imap-addr", addr(1), "--http-addr", ""}}
		b.start(t)
	}
	for _, u := range []struct{ name, host string }{{"ann@example.com", "127.0.0.2"}, {"ben@example.com", "127.0.0.3"}} {
		if l := deliver(t, net.JoinHostPort(u.host, strconv.Itoa(ports[0])), u.name, "for "+u.name); !strings.HasPrefix(l, "250") {
			t.Fatalf("delivery to %s: %q", u.name, l)
		}
	}

	dir := worldDir(t)
	ldapConf := writeConf(t, dir, "dovecot-proxy-ldap.conf.ext", substitute(t,
		exampleConfig(t, "dovecot.md", "dovecot-proxy-ldap.conf.ext"),
		"ldap://dir1.example:3389 ldap://dir2.example:3389", "ldap://"+ldapAddr,
		"dnpass = CHANGE-ME", "dnpass = "+dovecotReaderPassword,
		"=port=143", "=port="+strconv.Itoa(ports[1])))
	auth := writeConf(t, dir, "auth-proxy.conf.ext", substitute(t,
		exampleConfig(t, "dovecot.md", "dovecot-auth-proxy.conf.ext"),
		"/etc/dovecot/dovecot-proxy-ldap.conf.ext", ldapConf))
	dc := startDovecot(t, dir, auth)

	for _, u := range []struct{ name, pass string }{{"ann@example.com", "pw-ann"}, {"ben@example.com", "pw-ben"}} {
		msg := mustCurl(t, u.name, u.pass, "imap://"+dc.imap+"/INBOX;UID=1")
		if !strings.Contains(msg, "Subject: for "+u.name) {
			t.Errorf("%s through the proxy reads:\n%s", u.name, msg)
		}
	}
	if _, reply := dovecotSession(t, dc.imap, "", "ann@example.com", "wrong"); !strings.HasPrefix(reply, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("a wrong password through the proxy: %q", reply)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
	for _, want := range []string{"proxy(ann@example.com,127.0.0.2:", "proxy(ben@example.com,127.0.0.3:"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("dovecot.log has no %q", want)
		}
	}
}
