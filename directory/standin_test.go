package directory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// memStore is the least Store the stand-in test needs: Get only.
type memStore struct {
	Store
	users map[string]*User
}

func (m memStore) Get(_ context.Context, name string) (*User, error) {
	if u, ok := m.users[name]; ok {
		return u, nil
	}
	return nil, ErrNotFound
}

// recordStandIns records the hashes checks verify against as stand-ins,
// until the test ends; the function returns them so far.
func recordStandIns(t *testing.T) func() []string {
	var mu sync.Mutex
	var seen []string
	old := verifyStandIn
	verifyStandIn = func(stored, plain string) (bool, error) {
		mu.Lock()
		seen = append(seen, stored)
		mu.Unlock()
		return old(stored, plain)
	}
	t.Cleanup(func() { verifyStandIn = old })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// TestUnknownUserCostsAVerification: a check of an unknown name verifies
// the password against a stand-in hash of the configured scheme, whatever
// users were checked before, so its time matches a wrong password's.
func TestUnknownUserCostsAVerification(t *testing.T) {
	standIns := recordStandIns(t)

	ssha := "{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w=="
	sha512 := "{CRYPT}$6$salt$Zq1WF8yWoZgLhQwrLpg7wEbVGP6L8gFmQyLBm2QsyWTRq1Jq5H6GuuAXRsBBzvEFOTwxrb6WqiZ2M0e2HIHN41"
	s := NewService(memStore{users: map[string]*User{
		"a@x": {Name: "a@x", Password: ssha},
		"b@x": {Name: "b@x", Password: sha512},
	}}, Config{Scheme: "SSHA512", VerifyCacheSize: -1})
	check := func(name string) {
		t.Helper()
		if _, err := s.Check(context.Background(), name, "guess"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("check %s: %v", name, err)
		}
	}
	check("a@x")
	check("b@x")
	check("nobody@x")
	check("nobody@x")
	if seen := standIns(); len(seen) != 2 || seen[0] != seen[1] || !strings.HasPrefix(seen[0], "{SSHA512}") {
		t.Fatalf("stand-ins %q, want the same {SSHA512} hash each time, never a user's", seen)
	}
}

// TestStandInFollowsTheStore: once refreshed, the stand-in is of the cost
// class most stored users have, so an unknown name costs what a wrong
// password of a typical user costs; an empty store keeps the configured
// scheme's; checking a user of a rarer class does not change it.
func TestStandInFollowsTheStore(t *testing.T) {
	standIns := recordStandIns(t)
	last := func() string { seen := standIns(); return seen[len(seen)-1] }

	st := &listStore{}
	s := NewService(st, Config{Scheme: "SSHA512", VerifyCacheSize: -1})
	ctx := context.Background()
	if err := s.RefreshStandIn(ctx); err != nil {
		t.Fatal(err)
	}
	s.Check(ctx, "nobody@x", "guess")
	if !strings.HasPrefix(last(), "{SSHA512}") {
		t.Fatalf("empty store: stand-in %q, want the configured {SSHA512}", last())
	}
	ssha := "{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w=="
	crypt := "{CRYPT}$6$salt$Zq1WF8yWoZgLhQwrLpg7wEbVGP6L8gFmQyLBm2QsyWTRq1Jq5H6GuuAXRsBBzvEFOTwxrb6WqiZ2M0e2HIHN41"
	st.users = []*User{{Name: "a@x", Password: crypt}, {Name: "b@x", Password: ssha}, {Name: "c@x", Password: ssha}}
	if err := s.RefreshStandIn(ctx); err != nil {
		t.Fatal(err)
	}
	s.Check(ctx, "a@x", "guess") // a rarer class checked: no effect
	s.Check(ctx, "nobody@x", "guess")
	if last() != ssha {
		t.Fatalf("stand-in %q, want the {SSHA} most users have", last())
	}
}

// listStore serves Get and Search from a list of users, in order.
type listStore struct {
	Store
	users []*User
}

func (l *listStore) Get(_ context.Context, name string) (*User, error) {
	for _, u := range l.users {
		if u.Name == name {
			return u, nil
		}
	}
	return nil, ErrNotFound
}

func (l *listStore) Search(_ context.Context, _ Match, fn func(*User) error) error {
	for _, u := range l.users {
		if err := fn(u); err != nil {
			return err
		}
	}
	return nil
}
