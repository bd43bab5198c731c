package ldap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/redis/go-redis/v9"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/cache"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/directory/store/postgres"
	"github.com/tohost/tohost/internal/testservices"
)

// stacks are the stores a node serves from, cache layers included, as
// cmd/tohost builds them: bbolt under the in-process cache, and
// PostgreSQL under the in-process cache and Redis.
var stacks = []struct {
	name string
	open func(testing.TB) directory.Store
}{
	{"bolt", func(t testing.TB) directory.Store {
		st, err := bolt.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return cache.NewLocal(st, cache.LocalOptions{})
	}},
	{"postgres", func(t testing.TB) directory.Store {
		st, err := postgres.Open(context.Background(), testservices.Postgres(t), postgres.Options{MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		addr, prefix := testservices.Redis(t)
		client := redis.NewClient(&redis.Options{Addr: addr})
		local, shared := cache.NewShared(st, cache.LocalOptions{},
			cache.RedisOptions{Client: client, Prefix: prefix, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { shared.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; client.Close() })
		return local
	}},
}

// onEveryStack runs the test on a server over each stack.
func onEveryStack(t *testing.T, o options, test func(t *testing.T, h *harness)) {
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			o := o
			o.open = st.open
			test(t, start(t, o))
		})
	}
}

// concurrently runs op(client, i) for i < each on every connection, all
// connections at once, and reports the first error of each.
func concurrently(t *testing.T, conns []*goldap.Conn, each int, op func(c, i int, conn *goldap.Conn) error) {
	t.Helper()
	var wg sync.WaitGroup
	for c, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := op(c, i, conn); err != nil {
					t.Errorf("client %d, request %d: %v", c, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func admins(h *harness, n int) []*goldap.Conn {
	conns := make([]*goldap.Conn, n)
	for i := range conns {
		conns[i] = h.admin()
	}
	return conns
}

// TestModifyIncrementConcurrent: RFC 4525 increments from many clients at
// once all count. Each modify is applied to the entry as stored, in the
// write's own transaction, not to a copy read before it.
func TestModifyIncrementConcurrent(t *testing.T) {
	onEveryStack(t, adminConfig(), func(t *testing.T, h *harness) {
		h.user("counter@example.com", "quota", "1")
		const clients, each = 16, 10
		dn := userDN("counter@example.com")
		concurrently(t, admins(h, clients), each, func(_, _ int, c *goldap.Conn) error {
			m := goldap.NewModifyRequest(dn, nil)
			m.Increment("quota", "1")
			return c.Modify(m)
		})
		u := h.lookup("counter@example.com")
		if got := u.Get("quota"); got != strconv.Itoa(1+clients*each) {
			t.Fatalf("quota = %s after %d increments of 1 from 1, want %d (lost updates)", got, clients*each, 1+clients*each)
		}
		if u.Version != 1+clients*each {
			t.Errorf("version = %d, want %d", u.Version, 1+clients*each)
		}
	})
}

// TestModifyComposesConcurrent: modifies of different attributes of one
// entry, sent at once, all land: each client adds its own attribute and
// replaces it, and deletes a field set up for it, while the others do
// the same.
func TestModifyComposesConcurrent(t *testing.T) {
	onEveryStack(t, adminConfig(), func(t *testing.T, h *harness) {
		const clients, each = 8, 5
		var fields []string
		for c := range clients {
			fields = append(fields, fmt.Sprintf("old%d", c), "x")
		}
		h.user("shared@example.com", fields...)
		dn := userDN("shared@example.com")
		concurrently(t, admins(h, clients), each, func(c, i int, conn *goldap.Conn) error {
			m := goldap.NewModifyRequest(dn, nil)
			attr := fmt.Sprintf("own%d", c)
			if i == 0 {
				m.Add(attr, []string{"0"})
				m.Delete(fmt.Sprintf("old%d", c), []string{"x"})
			} else {
				m.Replace(attr, []string{strconv.Itoa(i)})
			}
			return conn.Modify(m)
		})
		u := h.lookup("shared@example.com")
		for c := range clients {
			if got := u.Get(fmt.Sprintf("own%d", c)); got != strconv.Itoa(each-1) {
				t.Errorf("own%d = %q, want %d", c, got, each-1)
			}
			if got := u.Get(fmt.Sprintf("old%d", c)); got != "" {
				t.Errorf("old%d = %q, want deleted", c, got)
			}
		}
		if len(u.Fields) != clients {
			t.Errorf("fields %+v", u.Fields)
		}
	})
}

// TestPasswordModifyConcurrent: of many Password Modify requests sent at
// once with the same, right, old password, one changes the password; the
// others find the old password no longer is the user's, as they would one
// after another.
func TestPasswordModifyConcurrent(t *testing.T) {
	onEveryStack(t, adminConfig(), func(t *testing.T, h *harness) {
		h.user("alice@example.com", "quota", "1")
		dn := userDN("alice@example.com")
		const clients = 12
		conns := make([]*goldap.Conn, clients)
		for i := range conns {
			conns[i] = h.bound(dn, "pw-alice@example.com")
		}
		results := make([]error, clients)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[i] = c.PasswordModify(goldap.NewPasswordModifyRequest("", "pw-alice@example.com", fmt.Sprintf("new-%d", i)))
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range results {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("requests %d and %d both changed the password from the same old one", winner, i)
			case err == nil:
				winner = i
			case !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials):
				t.Errorf("request %d: %v, want invalidCredentials", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no request changed the password")
		}
		wantCode(t, h.dial().Bind(dn, fmt.Sprintf("new-%d", winner)), goldap.LDAPResultSuccess)
		if q := h.lookup("alice@example.com").Get("quota"); q != "1" {
			t.Errorf("quota = %q: a password change touched the fields", q)
		}
	})
}
