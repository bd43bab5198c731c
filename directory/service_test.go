package directory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
)

func newService(t *testing.T) *directory.Service {
	t.Helper()
	st, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return directory.NewService(st, directory.Config{Scheme: password.SchemeSSHA})
}

// TestCreateIsExclusive: of many concurrent creates of one name exactly
// one wins; the others get ErrExists and change nothing.
func TestCreateIsExclusive(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = svc.Create(ctx, "new@x", fmt.Sprintf("pw%d", i),
				[]directory.Field{{Label: "n", Value: fmt.Sprint(i)}})
		}(i)
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creates %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, directory.ErrExists):
			t.Fatalf("create %d: %v", i, err)
		}
	}
	u, err := svc.Check(ctx, "new@x", fmt.Sprintf("pw%d", winner))
	if err != nil || u.Get("n") != fmt.Sprint(winner) || u.Version != 1 {
		t.Fatalf("stored user is not the winner's: %+v %v", u, err)
	}
}

// TestUpdateNeedsTheUser: Update changes an existing user like Set, but
// for a user that does not exist (deleted since the caller read it) it
// returns ErrNotFound and creates nothing, even with a password.
func TestUpdateNeedsTheUser(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	if err := svc.Update(ctx, "gone@x", "secret", []directory.Field{{Label: "q", Value: "1"}}); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("update of a missing user: %v", err)
	}
	if _, err := svc.Lookup(ctx, "gone@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("update created the user: %v", err)
	}
	if _, err := svc.Set(ctx, "a@x", "secret", []directory.Field{{Label: "q", Value: "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Update(ctx, "a@x", "other", []directory.Field{{Label: "r", Value: "2"}}); err != nil {
		t.Fatal(err)
	}
	u, err := svc.Check(ctx, "a@x", "other")
	if err != nil || u.Get("q") != "1" || u.Get("r") != "2" || u.Version != 2 {
		t.Fatalf("%+v %v", u, err)
	}
}

// TestSetHashesAndKeeps: cleartext is stored hashed, a {SCHEME} value as
// given, (NULL) keeps the password, and a changed password is not served
// from the verification cache.
func TestSetHashesAndKeeps(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	if _, err := svc.Set(ctx, "a@x", "secret", nil); err != nil {
		t.Fatal(err)
	}
	u, _ := svc.Lookup(ctx, "a@x")
	if u.Password == "secret" || u.Password[:6] != "{SSHA}" {
		t.Fatalf("stored password %q", u.Password)
	}
	if _, err := svc.Check(ctx, "a@x", "secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Set(ctx, "a@x", "", []directory.Field{{Label: "q", Value: "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Check(ctx, "a@x", "secret"); err != nil {
		t.Fatalf("(NULL) lost the password: %v", err)
	}
	if _, err := svc.Set(ctx, "a@x", "{PLAIN}other", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Check(ctx, "a@x", "secret"); !errors.Is(err, directory.ErrBadCredentials) {
		t.Fatalf("old password still accepted: %v", err)
	}
	if _, err := svc.Check(ctx, "a@x", "other"); err != nil {
		t.Fatal(err)
	}
	// A hash given as it is may not hold a control character (LDAP can
	// carry one; every export format writes the hash on one line).
	var in *directory.InputError
	if _, err := svc.Set(ctx, "a@x", "{SSHA}abc\r\nb@x:{PLAIN}x", nil); !errors.As(err, &in) {
		t.Fatalf("hash with CR LF: %v, want an input error", err)
	}
	if _, err := svc.Check(ctx, "a@x", "other"); err != nil {
		t.Fatalf("the refused set changed the password: %v", err)
	}
	// {PLAIN} keeps the cleartext: the same rule holds for it.
	plain := directory.NewService(svc.Store(), directory.Config{Scheme: password.SchemePlain})
	if _, err := plain.Set(ctx, "a@x", "pw\nb@x", nil); !errors.As(err, &in) {
		t.Fatalf("PLAIN with LF: %v, want an input error", err)
	}
	// A cleartext password is hashed: what it holds is not stored.
	if _, err := svc.Set(ctx, "a@x", "tab\tword", nil); err != nil {
		t.Fatal(err)
	}
}
