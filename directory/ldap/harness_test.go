package ldap

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/internal/listen"
)

const (
	testBase    = "dc=example,dc=com"
	testAdminDN = "cn=admin,dc=example,dc=com"
	testAdminPW = "admin-secret"
)

// harness is a server on a loopback port over a fresh store: bbolt unless
// options.open says otherwise.
type harness struct {
	t      testing.TB
	addr   string
	svc    *directory.Service
	srv    *Server
	store  directory.Store
	cancel context.CancelFunc
	done   chan error
}

type options struct {
	cfg  Config
	wrap func(directory.Store) directory.Store
	tls  bool         // wrap the listener: LDAPS
	gate *listen.Gate // put the listener behind a connection gate
	// front, when set, wraps the Service the server answers from.
	front func(Directory) Directory
	// dir configures the directory.Service (default: {SSHA} hashes).
	dir directory.Config
	// open, when set, opens the store instead of a fresh bbolt one; the
	// harness closes it when the test ends.
	open func(testing.TB) directory.Store
}

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func start(t testing.TB, o options) *harness {
	t.Helper()
	var st directory.Store
	if o.open != nil {
		st = o.open(t)
	} else {
		b, err := bolt.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		st = b
	}
	s := st
	if o.wrap != nil {
		s = o.wrap(st)
	}
	if o.dir.Scheme == "" {
		o.dir.Scheme = password.SchemeSSHA
	}
	svc := directory.NewService(s, o.dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, addr: ln.Addr().String(), svc: svc, store: s, done: make(chan error, 1)}
	if o.gate != nil {
		ln = o.gate.Wrap(ln, listen.Options{Refusal: Refusal})
	}
	if o.tls {
		ln = tls.NewListener(ln, o.cfg.TLS)
	}
	cfg := o.cfg
	if cfg.Base == "" {
		cfg.Base = testBase
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testLogOutput, nil))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	var d Directory = svc
	if o.front != nil {
		d = o.front(svc)
	}
	srv := New(d, cfg)
	h.srv = srv
	go func() { h.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		h.stop()
		st.Close()
	})
	return h
}

// adminConfig is the usual configuration of the tests: an admin, no
// anonymous reads.
func adminConfig() options {
	return options{cfg: Config{AdminPassword: testAdminPW}}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("server did not stop")
	}
}

// user creates name with password "pw-"+name and the given fields.
func (h *harness) user(name string, fields ...string) {
	h.t.Helper()
	var ff []directory.Field
	for i := 0; i+1 < len(fields); i += 2 {
		ff = append(ff, directory.Field{Label: fields[i], Value: fields[i+1]})
	}
	if _, err := h.svc.Set(context.Background(), name, "pw-"+name, ff); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) dial() *goldap.Conn {
	h.t.Helper()
	c, err := goldap.DialURL("ldap://" + h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetTimeout(10 * time.Second)
	h.t.Cleanup(func() { c.Close() })
	return c
}

// bound dials and binds; dn "" stays anonymous.
func (h *harness) bound(dn, pw string) *goldap.Conn {
	h.t.Helper()
	c := h.dial()
	if dn != "" {
		if err := c.Bind(dn, pw); err != nil {
			h.t.Fatalf("bind %s: %v", dn, err)
		}
	}
	return c
}

func (h *harness) admin() *goldap.Conn { return h.bound(testAdminDN, testAdminPW) }

func userDN(name string) string { return "uid=" + name + ",ou=users," + testBase }

// wantCode checks that err is an LDAP error with the result code.
func wantCode(t testing.TB, err error, code uint16) {
	t.Helper()
	if code == goldap.LDAPResultSuccess {
		if err != nil {
			t.Fatalf("got %v, want success", err)
		}
		return
	}
	if !goldap.IsErrorWithCode(err, code) {
		t.Fatalf("got %v, want result %d (%s)", err, code, goldap.LDAPResultCodeMap[code])
	}
}

// search runs a search and returns the DNs found.
func search(t testing.TB, c *goldap.Conn, base string, scope int, filter string, attrs ...string) ([]*goldap.Entry, error) {
	t.Helper()
	res, err := c.Search(goldap.NewSearchRequest(base, scope, goldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

func dns(entries []*goldap.Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.DN
	}
	return out
}

func fill(h *harness, n int) {
	for i := 0; i < n; i++ {
		h.user(fmt.Sprintf("user%04d@example.com", i), "tohost", fmt.Sprintf("backend%d.example", i%4+1), "quota", fmt.Sprint(i))
	}
}

var testLogOutput io.Writer = io.Discard
