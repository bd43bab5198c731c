package directory_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
)

// cheapArgon2 keeps argon2id a slow scheme for the pool while the tests
// hash quickly.
var cheapArgon2 = password.Argon2Params{Memory: 64, Time: 1, Threads: 1}

func argon2Service(t *testing.T, st directory.Store, cfg directory.Config) *directory.Service {
	t.Helper()
	cfg.Scheme, cfg.Argon2 = password.SchemeArgon2ID, cheapArgon2
	return directory.NewService(st, cfg)
}

// waitUntil polls cond; what the tests check is an order, not a time.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 20_000 {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdPool occupies the pool's only worker until the returned function is
// called.
func holdPool(t *testing.T, pool *password.Pool) (release func()) {
	t.Helper()
	done, started := make(chan struct{}), make(chan struct{})
	go pool.Do(context.Background(), "test", func() { close(started); <-done })
	<-started
	return func() { close(done) }
}

// TestChecksShareTheHashPoolFairly: with the worker busy and many checks
// of one client address queued (unknown names, whose stand-in hash waits
// in the same pool, and wrong passwords), a check from another address
// waits for at most one of them, not for the queue: the first in that
// queue came before it and is as entitled to the next turn.
func TestChecksShareTheHashPoolFairly(t *testing.T) {
	svc := argon2Service(t, stores[0].open(t), directory.Config{HashWorkers: 1, HashQueueTimeout: -1, VerifyCacheSize: -1})
	ctx := context.Background()
	if _, err := svc.Set(ctx, "a@x", "right", nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	defer directory.HookVerify(func(_, plain string) {
		mu.Lock()
		order = append(order, plain)
		mu.Unlock()
	})()
	release := holdPool(t, svc.HashPool())
	storm := directory.WithClient(ctx, "192.0.2.1")
	var wg sync.WaitGroup
	const queued = 30
	for i := range queued {
		name := "a@x"
		if i%2 == 0 {
			name = fmt.Sprintf("nobody%d@x", i)
		}
		wg.Go(func() {
			if _, err := svc.Check(storm, name, "guess"); !errors.Is(err, directory.ErrBadCredentials) {
				t.Errorf("storm check: %v", err)
			}
		})
	}
	waitUntil(t, "the storm queued", func() bool { return svc.HashPool().Waiting() == queued })
	wg.Go(func() {
		if _, err := svc.Check(directory.WithClient(ctx, "198.51.100.7"), "a@x", "right"); err != nil {
			t.Errorf("genuine check: %v", err)
		}
	})
	waitUntil(t, "the genuine check queued", func() bool { return svc.HashPool().Waiting() == queued+1 })
	release()
	wg.Wait()
	if len(order) != queued+1 || order[0] != "right" && order[1] != "right" {
		t.Fatalf("verified in the order %v; want the other address's check first or second", order[:min(5, len(order))])
	}
}

// TestCheckBusy: a check that waits past the queue timeout is ErrBusy,
// never a wrong password, for known and unknown names alike; cheap hashes
// do not wait in the pool at all.
func TestCheckBusy(t *testing.T) {
	svc := argon2Service(t, stores[0].open(t), directory.Config{HashWorkers: 1, HashQueueTimeout: time.Millisecond})
	ctx := context.Background()
	ssha, _ := password.Hash(password.SchemeSSHA, "cheap")
	for name, pass := range map[string]string{"a@x": "right", "s@x": ssha} {
		if _, err := svc.Set(ctx, name, pass, nil); err != nil {
			t.Fatal(err)
		}
	}
	defer holdPool(t, svc.HashPool())()
	for _, name := range []string{"a@x", "nobody@x"} {
		if _, err := svc.Check(ctx, name, "right"); !errors.Is(err, directory.ErrBusy) {
			t.Errorf("check %s while busy: %v, want ErrBusy", name, err)
		}
	}
	if _, err := svc.Check(ctx, "s@x", "cheap"); err != nil {
		t.Errorf("{SSHA} check while busy: %v", err)
	}
	if _, err := svc.Set(ctx, "b@x", "new", nil); !errors.Is(err, directory.ErrBusy) {
		t.Errorf("set while busy: %v, want ErrBusy", err)
	}
}

// TestRehashOnLogin: a login against a weaker hash stores one of the
// configured scheme and costs, once; wrong passwords, stronger hashes and
// a service without the option change nothing.
func TestRehashOnLogin(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			st := s.open(t)
			t.Cleanup(func() { st.Close() })
			svc := argon2Service(t, st, directory.Config{RehashOnLogin: true})
			ctx := context.Background()
			ssha, _ := password.Hash(password.SchemeSSHA, "pw")
			strong, _ := password.Hasher{Argon2: password.Argon2Params{Memory: 128, Time: 2}}.Hash("pw")
			for name, h := range map[string]string{"old@x": ssha, "crypt@x": "{CRYPT}$1$salt$IXp9zPHZ94CMcVBXaZFPN/", "strong@x": strong} {
				if _, err := svc.Set(ctx, name, h, []directory.Field{{Label: "tohost", Value: "b1"}}); err != nil {
					t.Fatal(err)
				}
			}
			stored := func(name string) *directory.User {
				t.Helper()
				u, err := st.Get(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			if _, err := svc.Check(ctx, "old@x", "wrong"); !errors.Is(err, directory.ErrBadCredentials) {
				t.Fatal(err)
			}
			if stored("old@x").Password != ssha {
				t.Fatal("a wrong password rehashed")
			}
			for _, name := range []string{"old@x", "crypt@x"} {
				if _, err := svc.Check(ctx, name, "pw"); err != nil {
					t.Fatalf("check %s: %v", name, err)
				}
				u := stored(name)
				if !strings.HasPrefix(u.Password, "{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$") || len(u.Fields) != 1 {
					t.Fatalf("%s after login: %q %v, want argon2id m=64,t=1 and its field", name, u.Password, u.Fields)
				}
				if ok, err := password.Verify(u.Password, "pw"); !ok || err != nil {
					t.Fatalf("rehashed %s does not verify: %v %v", name, ok, err)
				}
				version := u.Version
				if _, err := svc.Check(ctx, name, "pw"); err != nil || stored(name).Version != version {
					t.Fatalf("second login of %s: %v, version %d → %d", name, err, version, stored(name).Version)
				}
			}
			if _, err := svc.Check(ctx, "strong@x", "pw"); err != nil || stored("strong@x").Password != strong {
				t.Fatalf("a stronger hash was replaced: %v", err)
			}
			plain := argon2Service(t, st, directory.Config{})
			if _, err := plain.Set(ctx, "keep@x", ssha, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := plain.Check(ctx, "keep@x", "pw"); err != nil || stored("keep@x").Password != ssha {
				t.Fatalf("rehashed without the option: %v", err)
			}
		})
	}
}

// TestRehashYieldsToAConcurrentChange: a password changed between a
// login's verification and its rehash stays changed: the rehash writes
// only over the hash it verified.
func TestRehashYieldsToAConcurrentChange(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			st := s.open(t)
			t.Cleanup(func() { st.Close() })
			svc := argon2Service(t, st, directory.Config{RehashOnLogin: true})
			other := argon2Service(t, st, directory.Config{}) // another node's write
			ctx := context.Background()
			ssha, _ := password.Hash(password.SchemeSSHA, "old")
			if _, err := svc.Set(ctx, "u@x", ssha, nil); err != nil {
				t.Fatal(err)
			}
			changed := false
			defer directory.HookBeforeRehash(func() {
				if _, err := other.Set(ctx, "u@x", "new", nil); err != nil {
					t.Error(err)
				}
				changed = true
			})()
			if _, err := svc.Check(ctx, "u@x", "old"); err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Fatal("no rehash was attempted")
			}
			u, err := st.Get(ctx, "u@x")
			if err != nil {
				t.Fatal(err)
			}
			if ok, _ := password.Verify(u.Password, "new"); !ok {
				t.Fatalf("the concurrent change was overwritten: the password is not \"new\" (%.40s)", u.Password)
			}
		})
	}
}
