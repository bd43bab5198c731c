package directory_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/directory/store/postgres"
	"github.com/tohost/tohost/internal/testservices"
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

// stores are the back-ends the Service tests of Modify run on.
var stores = []struct {
	name string
	open func(t *testing.T) directory.Store
}{
	{"bolt", func(t *testing.T) directory.Store {
		st, err := bolt.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
	{"postgres", func(t *testing.T) directory.Store {
		st, err := postgres.Open(context.Background(), testservices.Postgres(t), postgres.Options{MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
}

func onEveryStore(t *testing.T, test func(t *testing.T, svc *directory.Service)) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			st := s.open(t)
			t.Cleanup(func() { st.Close() })
			test(t, directory.NewService(st, directory.Config{Scheme: password.SchemeSSHA}))
		})
	}
}

// increment adds d to the numeric field label.
func increment(label string, d int) func(u *directory.User) error {
	return func(u *directory.User) error {
		for i, f := range u.Fields {
			if f.Label == label {
				n, err := strconv.Atoi(f.Value)
				if err != nil {
					return err
				}
				u.Fields[i].Value = strconv.Itoa(n + d)
				return nil
			}
		}
		return errors.New("no " + label)
	}
}

// TestModifyConcurrent: concurrent Modifies of one user each see the
// others' results: none is lost.
func TestModifyConcurrent(t *testing.T) {
	onEveryStore(t, func(t *testing.T, svc *directory.Service) {
		ctx := context.Background()
		if err := svc.Create(ctx, "counter@x", "pw", []directory.Field{{Label: "quota", Value: "1"}}); err != nil {
			t.Fatal(err)
		}
		const workers, each = 16, 10
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if _, err := svc.Modify(ctx, "counter@x", increment("quota", 1)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		u, err := svc.Lookup(ctx, "counter@x")
		if err != nil {
			t.Fatal(err)
		}
		if u.Get("quota") != strconv.Itoa(1+workers*each) || u.Version != 1+workers*each {
			t.Fatalf("quota %s, version %d; want %d (lost updates)", u.Get("quota"), u.Version, 1+workers*each)
		}
	})
}

// TestModifyRefusalFailsOnlyItself: a Modify whose fn refuses gets fn's
// error back, unchanged, and writes nothing; writes committed with it
// (the embedded store commits concurrent writes as one group) succeed.
func TestModifyRefusalFailsOnlyItself(t *testing.T) {
	onEveryStore(t, func(t *testing.T, svc *directory.Service) {
		ctx := context.Background()
		if err := svc.Create(ctx, "a@x", "pw", []directory.Field{{Label: "quota", Value: "0"}}); err != nil {
			t.Fatal(err)
		}
		refused := errors.New("refused")
		const workers, each = 8, 20
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if w%2 == 1 {
						_, err := svc.Modify(ctx, "a@x", func(u *directory.User) error {
							u.Fields = nil // dropped with the refusal
							return fmt.Errorf("wrapped: %w", refused)
						})
						if !errors.Is(err, refused) || errors.Is(err, directory.ErrUnavailable) {
							t.Errorf("refused modify: %v", err)
							return
						}
					} else if _, err := svc.Modify(ctx, "a@x", increment("quota", 1)); err != nil {
						t.Errorf("modify committed with a refused one: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		u, _ := svc.Lookup(ctx, "a@x")
		if want := strconv.Itoa(workers / 2 * each); u.Get("quota") != want {
			t.Fatalf("quota %s, want %s", u.Get("quota"), want)
		}
	})
}

// TestModify: what Modify keeps, validates and refuses.
func TestModify(t *testing.T) {
	onEveryStore(t, func(t *testing.T, svc *directory.Service) {
		ctx := context.Background()
		var in *directory.InputError
		// Never creates.
		called := false
		if _, err := svc.Modify(ctx, "gone@x", func(*directory.User) error { called = true; return nil }); !errors.Is(err, directory.ErrNotFound) || called {
			t.Fatalf("modify of a missing user: %v, fn called %v", err, called)
		}
		if _, err := svc.Lookup(ctx, "gone@x"); !errors.Is(err, directory.ErrNotFound) {
			t.Fatalf("modify created the user: %v", err)
		}
		if _, err := svc.Modify(ctx, "two@@x", func(*directory.User) error { return nil }); !errors.As(err, &in) {
			t.Fatalf("modify of an invalid name: %v", err)
		}
		if err := svc.Create(ctx, "Alice@X", "secret", []directory.Field{{Label: "q", Value: "1"}, {Label: "r", Value: "2"}}); err != nil {
			t.Fatal(err)
		}
		before, _ := svc.Lookup(ctx, "alice@x")
		if _, err := svc.Check(ctx, "alice@x", "secret"); err != nil { // now in the verification cache
			t.Fatal(err)
		}

		// fn changes fields and the password; name, display and creation
		// time stay.
		u, err := svc.Modify(ctx, "ALICE@x", func(u *directory.User) error {
			u.Fields[0].Value = "10"
			u.Fields = append(u.Fields[:1], directory.Field{Label: "s", Value: "3"})
			u.Password = "{PLAIN}other"
			u.Name, u.Display, u.Created, u.Version = "mallory@x", "Mallory@x", time.Time{}, 99
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := svc.Lookup(ctx, "alice@x")
		for _, v := range []*directory.User{u, got} {
			if v.Name != "alice@x" || v.Display != "Alice@X" || !v.Created.Equal(before.Created) || v.Version != before.Version+1 ||
				v.Updated.Before(before.Updated) || fmt.Sprint(v.Fields) != "[{q 10} {s 3}]" || v.Password != "{PLAIN}other" {
				t.Fatalf("modified: %+v (before %+v)", v, before)
			}
		}
		if _, err := svc.Check(ctx, "alice@x", "secret"); !errors.Is(err, directory.ErrBadCredentials) {
			t.Fatalf("old password still accepted (verification cache not forgotten): %v", err)
		}
		if _, err := svc.Check(ctx, "alice@x", "other"); err != nil {
			t.Fatal(err)
		}

		// Refused results change nothing.
		for what, fn := range map[string]func(u *directory.User) error{
			"cleartext password":  func(u *directory.User) error { u.Password = "cleartext"; return nil },
			"empty password":      func(u *directory.User) error { u.Password = ""; return nil },
			"hash with a newline": func(u *directory.User) error { u.Password = "{SSHA}abc\nx"; return nil },
			"bad label":           func(u *directory.User) error { u.Fields[0].Label = "a b"; return nil },
			"bad value":           func(u *directory.User) error { u.Fields[0].Value = `"`; return nil },
			"empty value":         func(u *directory.User) error { u.Fields[0].Value = ""; return nil },
			"label given twice": func(u *directory.User) error {
				u.Fields = append(u.Fields, directory.Field{Label: "q", Value: "9"})
				return nil
			},
			"new field, bad value": func(u *directory.User) error {
				u.Fields = append(u.Fields, directory.Field{Label: "t", Value: "a\nb"})
				return nil
			},
		} {
			if _, err := svc.Modify(ctx, "alice@x", fn); !errors.As(err, &in) {
				t.Errorf("%s: %v, want an input error", what, err)
			}
		}
		if after, _ := svc.Lookup(ctx, "alice@x"); after.Version != got.Version || fmt.Sprint(after.Fields) != fmt.Sprint(got.Fields) ||
			after.Password != got.Password {
			t.Fatalf("a refused modify wrote: %+v", after)
		}

		// Nothing changed: nothing written.
		u, err = svc.Modify(ctx, "alice@x", func(u *directory.User) error { u.Fields[0].Value = "10"; return nil })
		if err != nil || u.Version != got.Version || !u.Updated.Equal(got.Updated) {
			t.Fatalf("unchanged modify: %+v %v", u, err)
		}
		if after, _ := svc.Lookup(ctx, "alice@x"); after.Version != got.Version {
			t.Fatalf("unchanged modify wrote version %d", after.Version)
		}
	})
}

// TestOverlongPasswordIsBadInput: a cleartext password past the longest
// one hashed is the client's mistake (-ERR), not an outage (-DEAD).
func TestOverlongPasswordIsBadInput(t *testing.T) {
	svc := newService(t)
	long := strings.Repeat("p", password.MaxPasswordLen+1)
	_, err := svc.Set(context.Background(), "a@x", long, nil)
	if !directory.IsAnswer(err) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("Set with a %d-byte password: %v, want an input error", len(long), err)
	}
}
