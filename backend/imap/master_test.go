package imap

import (
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func withMaster(c *Config) {
	c.MasterUser, c.MasterPassword = "mover", "master-secret"
}

// TestMasterLogin: the master credentials open any directory user's
// mailbox, whichever backend the user lives on; the home rule still
// applies to the user's own logins.
func TestMasterLogin(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { withMaster(c); c.Metrics = NewMetrics(reg) })

	// carol lives on be2: her own login is refused here...
	c := e.dial(nil)
	if err := c.Login("carol@example.org", "pw").Wait(); imapCode(err) != imap.ResponseCodeAuthorizationFailed {
		t.Fatalf("carol's own login on be1: %v, want NO [AUTHORIZATIONFAILED]", err)
	}
	// ...the master login as her is not, and it is her mailbox.
	c = e.dial(nil)
	if err := c.Authenticate(sasl.NewPlainClient("carol@example.org", "mover", "master-secret")); err != nil {
		t.Fatalf("master login as carol: %v", err)
	}
	appendMsg(t, c, "INBOX", testMessage("for carol", "x"), nil)
	mb, err := e.store.Mailbox("carol@example.org")
	if err != nil {
		t.Fatal(err)
	}
	f, err := mb.Folder("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := f.Sync(); err != nil || len(msgs) != 1 {
		t.Fatalf("carol's INBOX on disk: %d messages, %v; want the one appended", len(msgs), err)
	}
	// A user with no tohost and no AcceptDefault: the master gets in too.
	c = e.dial(nil)
	if err := c.Authenticate(sasl.NewPlainClient("dave@example.org", "mover", "master-secret")); err != nil {
		t.Fatalf("master login as dave: %v", err)
	}
	if got := testutil.ToFloat64(e.cfg.Metrics.logins.WithLabelValues(outcomeMaster)); got != 2 {
		t.Errorf("master logins counted: %v, want 2", got)
	}

	for _, tc := range []struct {
		name, authz, authc, pass string
	}{
		{"wrong master password", "carol@example.org", "mover", "master-secreT"},
		{"wrong master name", "carol@example.org", "movers", "master-secret"},
		{"user's password as master", "carol@example.org", "alice@example.org", "secret"},
		{"empty master password", "carol@example.org", "mover", ""},
		{"unknown user", "nobody@example.org", "mover", "master-secret"},
	} {
		c := e.dial(nil)
		err := c.Authenticate(sasl.NewPlainClient(tc.authz, tc.authc, tc.pass))
		if imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("%s: %v, want NO [AUTHENTICATIONFAILED]", tc.name, err)
		}
		if c.State() != imap.ConnStateNotAuthenticated {
			t.Errorf("%s: state %v", tc.name, c.State())
		}
	}
	if got := testutil.ToFloat64(e.cfg.Metrics.logins.WithLabelValues(outcomeFailed)); got != 5 {
		t.Errorf("failed logins counted: %v, want the 5 failed master logins", got)
	}

	// An outage of the directory is a temporary failure.
	e.dir.down.Store(true)
	c = e.dial(nil)
	if err := c.Authenticate(sasl.NewPlainClient("carol@example.org", "mover", "master-secret")); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Errorf("master login during an outage: %v, want NO [UNAVAILABLE]", err)
	}
}

// TestMasterLoginOff: without both master settings an authorization
// identity never logs in, not even with an empty master password.
func TestMasterLoginOff(t *testing.T) {
	for _, mod := range []func(*Config){
		nil,
		func(c *Config) { c.MasterUser = "mover" },
		func(c *Config) { c.MasterPassword = "master-secret" },
	} {
		e := newEnv(t, mod)
		for _, pass := range []string{"master-secret", ""} {
			c := e.dial(nil)
			if err := c.Authenticate(sasl.NewPlainClient("alice@example.org", "mover", pass)); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
				t.Errorf("config %+v: master login with %q: %v, want NO [AUTHENTICATIONFAILED]", e.cfg.MasterUser, pass, err)
			}
		}
		// The user's own AUTHENTICATE, authorization identity her own name.
		c := e.dial(nil)
		if err := c.Authenticate(sasl.NewPlainClient("alice@example.org", "alice@example.org", "secret")); err != nil {
			t.Errorf("AUTHENTICATE with authzid = authcid: %v", err)
		}
	}
}
