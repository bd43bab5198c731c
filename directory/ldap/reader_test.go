package ldap

import (
	"context"
	"strings"
	"sync"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
)

const (
	testReaderDN = "cn=dovecot,dc=example,dc=com"
	testReaderPW = "reader-secret"
)

// TestReaderAccount: a read-only account reads every user, never
// userPassword, and cannot write anything: add, modify, delete, rename
// and Password Modify are refused. A wrong password is refused; another
// reader's password does not open this one.
func TestReaderAccount(t *testing.T) {
	o := adminConfig()
	o.cfg.Readers = []Reader{{DN: testReaderDN, Password: testReaderPW}, {DN: "cn=postfix,dc=example,dc=com", Password: "other"}}
	h := start(t, o)
	h.user("a@x", "tohost", "b1")
	h.user("b@x", "tohost", "b2")
	c := h.dial()
	if err := c.Bind(testReaderDN, "other"); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		t.Fatalf("reader bind with another reader's password: %v", err)
	}
	if err := c.Bind("CN=Dovecot, DC=example,dc=com", testReaderPW); err != nil {
		t.Fatalf("reader bind: %v", err)
	}
	if res, err := c.WhoAmI(nil); err != nil || res.AuthzID != "dn:"+testReaderDN {
		t.Fatalf("whoami: %+v %v", res, err)
	}
	es, err := search(t, c, "ou=users,"+testBase, goldap.ScopeSingleLevel, "(objectClass=*)", "uid", "mailHost", "userPassword")
	if err != nil || len(es) != 2 {
		t.Fatalf("reader search: %d entries, %v", len(es), err)
	}
	for _, e := range es {
		if e.GetAttributeValue("mailHost") == "" || e.GetAttributeValue("userPassword") != "" {
			t.Fatalf("reader sees %s: mailHost %q, userPassword %q", e.DN, e.GetAttributeValue("mailHost"), e.GetAttributeValue("userPassword"))
		}
	}
	userDN := "uid=a@x,ou=users," + testBase
	mod := goldap.NewModifyRequest(userDN, nil)
	mod.Replace("tohost", []string{"evil"})
	add := goldap.NewAddRequest("uid=new@x,ou=users,"+testBase, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("userPassword", []string{"pw"})
	for what, err := range map[string]error{
		"modify": c.Modify(mod),
		"add":    c.Add(add),
		"delete": c.Del(goldap.NewDelRequest(userDN, nil)),
		"rename": c.ModifyDN(goldap.NewModifyDNRequest(userDN, "uid=c@x", true, "")),
	} {
		if !goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights) {
			t.Errorf("reader %s: %v, want insufficientAccessRights", what, err)
		}
	}
	if _, err := c.PasswordModify(goldap.NewPasswordModifyRequest(userDN, "", "new")); !goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("reader password modify: %v", err)
	}
	if _, err := c.PasswordModify(goldap.NewPasswordModifyRequest("", "", "new")); !goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("reader password modify of itself: %v", err)
	}
	if u, _ := h.svc.Lookup(t.Context(), "a@x"); u.Tohost() != "b1" {
		t.Fatalf("a reader changed a@x: %+v", u)
	}
}

// TestSetPasswords: new passwords take effect for new binds; the old ones
// stop working; a reader password missing is refused and changes nothing.
func TestSetPasswords(t *testing.T) {
	o := adminConfig()
	o.cfg.Readers = []Reader{{DN: testReaderDN, Password: testReaderPW}}
	h := start(t, o)
	if err := h.srv.SetPasswords("new-admin", []string{""}); err == nil {
		t.Fatal("an empty reader password accepted")
	}
	if err := h.srv.SetPasswords("new-admin", []string{"new-reader"}); err != nil {
		t.Fatal(err)
	}
	c := h.dial()
	for _, b := range []struct {
		dn, pw string
		ok     bool
	}{{testAdminDN, testAdminPW, false}, {testAdminDN, "new-admin", true}, {testReaderDN, testReaderPW, false}, {testReaderDN, "new-reader", true}} {
		err := c.Bind(b.dn, b.pw)
		if b.ok != (err == nil) {
			t.Errorf("bind %s with %q: %v", b.dn, b.pw, err)
		}
	}
}

// TestPasswordsHashedAsTheDirectory: a cleartext userPassword in an Add
// and a Password Modify are hashed as the directory hashes every new
// password, its scheme and costs (here argon2id at 1 MiB, 1 pass), not
// with defaults of the LDAP front end's own.
func TestPasswordsHashedAsTheDirectory(t *testing.T) {
	o := adminConfig()
	o.dir = directory.Config{Scheme: password.SchemeArgon2ID, Argon2: password.Argon2Params{Memory: 1024, Time: 1, Threads: 1}}
	h := start(t, o)
	c := h.dial()
	if err := c.Bind(testAdminDN, testAdminPW); err != nil {
		t.Fatal(err)
	}
	dn := "uid=new@x,ou=users," + testBase
	add := goldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("userPassword", []string{"first"})
	if err := c.Add(add); err != nil {
		t.Fatal(err)
	}
	const costs = "$argon2id$v=19$m=1024,t=1,p=1$"
	if u, err := h.svc.Lookup(t.Context(), "new@x"); err != nil || !strings.Contains(u.Password, costs) {
		t.Fatalf("added with %q (%v), want costs %s", u.Password, err, costs)
	}
	if _, err := c.PasswordModify(goldap.NewPasswordModifyRequest(dn, "", "second")); err != nil {
		t.Fatal(err)
	}
	if u, err := h.svc.Check(t.Context(), "new@x", "second"); err != nil || !strings.Contains(u.Password, costs) {
		t.Fatalf("password modify stored %+v (%v), want costs %s", u, err, costs)
	}
}

// clientRecorder records the client each Check names for the hash pool.
type clientRecorder struct {
	Directory
	mu      sync.Mutex
	clients []string
}

func (c *clientRecorder) Check(ctx context.Context, name, pass string) (*directory.User, error) {
	c.mu.Lock()
	c.clients = append(c.clients, directory.ClientOf(ctx))
	c.mu.Unlock()
	return c.Directory.Check(ctx, name, pass)
}

// TestBindNamesItsClient: a bind's password check names the client's
// address, so its hash waits in that address's queue of the pool, as a
// TCPAuth check does, not in one queue all LDAP clients share.
func TestBindNamesItsClient(t *testing.T) {
	rec := &clientRecorder{}
	o := adminConfig()
	o.front = func(d Directory) Directory { rec.Directory = d; return rec }
	h := start(t, o)
	h.user("a@x")
	if err := h.dial().Bind("uid=a@x,ou=users,"+testBase, "pw-a@x"); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.clients) != 1 || rec.clients[0] != "127.0.0.1" {
		t.Fatalf("checks named clients %q, want [127.0.0.1]", rec.clients)
	}
}

// busyDirectory answers every check as a directory whose hash queue is
// full does.
type busyDirectory struct{ Directory }

func (busyDirectory) Check(context.Context, string, string) (*directory.User, error) {
	return nil, directory.ErrBusy
}

// TestBindWhenBusy: a bind that finds the hash queue full is answered
// busy (retry later), never invalidCredentials or unavailable.
func TestBindWhenBusy(t *testing.T) {
	o := adminConfig()
	o.front = func(d Directory) Directory { return busyDirectory{d} }
	h := start(t, o)
	h.user("a@x")
	if err := h.dial().Bind("uid=a@x,ou=users,"+testBase, "pw-a@x"); !goldap.IsErrorWithCode(err, goldap.LDAPResultBusy) {
		t.Fatalf("bind with the queue full: %v, want busy", err)
	}
}
