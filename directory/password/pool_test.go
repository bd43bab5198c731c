package password

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blocker is a hash that runs until the test lets it finish.
type blocker struct{ done chan struct{} }

func (b blocker) run() { <-b.done }

// waitFor polls cond until it holds; the test has no deadline of its own
// beyond go test's, because what it checks is an order, not a time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 10_000 {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolIsFair: with a worker busy and many hashes of client A queued,
// a hash of client B is the next to get a worker: it waits for the hash
// running now, not for A's queue.
func TestPoolIsFair(t *testing.T) {
	p := NewPool(1, 0)
	var order []string
	p.granted = func(client string) { order = append(order, client) } // under p.mu
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := func(client string) {
		wg.Go(func() {
			if err := p.Do(context.Background(), client, blocker{done}.run); err != nil {
				t.Error(err)
			}
		})
	}
	const queued = 50
	for i := range queued + 1 { // one runs, the rest queue
		start("A")
		waitFor(t, "A queued", func() bool { return p.Waiting() == i })
	}
	start("B")
	waitFor(t, "B queued", func() bool { return p.Waiting() == queued+1 })
	close(done)
	wg.Wait()
	if len(order) != queued+1 || order[0] != "B" {
		t.Fatalf("after the running hash of A, workers went to %v; want B first", order[:min(5, len(order))])
	}
}

// TestPoolShares: two clients with long queues alternate.
func TestPoolShares(t *testing.T) {
	p := NewPool(1, 0)
	var order []string
	p.granted = func(client string) { order = append(order, client) }
	done := make(chan struct{})
	var wg sync.WaitGroup
	n := 0
	for _, c := range []string{"A", "A", "A", "A", "A", "A", "B", "B", "B", "B"} {
		wg.Go(func() { p.Do(context.Background(), c, blocker{done}.run) })
		waitFor(t, "queued", func() bool { return p.Waiting() == n })
		n++
	}
	close(done)
	wg.Wait()
	// A's first ran at once; then B and A take turns while both wait.
	want := "BABABABAA"
	got := ""
	for _, c := range order {
		got += c
	}
	if got != want {
		t.Errorf("grant order %s, want %s", got, want)
	}
}

// TestPoolBound: never more hashes at once than workers.
func TestPoolBound(t *testing.T) {
	p := NewPool(2, 0)
	var running, peak atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			p.Do(context.Background(), string(rune('a'+i%5)), func() {
				n := running.Add(1)
				for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
				}
				time.Sleep(time.Millisecond)
				running.Add(-1)
			})
		})
	}
	wg.Wait()
	if peak.Load() != 2 {
		t.Errorf("%d hashes at once, want 2", peak.Load())
	}
	if len(p.clients) != 0 || p.running != 0 || p.Waiting() != 0 {
		t.Errorf("idle pool holds %d clients, %d running, %d waiting", len(p.clients), p.running, p.Waiting())
	}
}

// TestPoolTimeout: a hash that waits past the timeout is not computed and
// gives ErrBusy; the pool forgets it.
func TestPoolTimeout(t *testing.T) {
	p := NewPool(1, time.Millisecond)
	done := make(chan struct{})
	go p.Do(context.Background(), "A", blocker{done}.run)
	waitFor(t, "A running", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.running == 1 })
	ran := false
	if err := p.Do(context.Background(), "B", func() { ran = true }); !errors.Is(err, ErrBusy) || ran {
		t.Fatalf("Do while busy = %v (ran %v), want ErrBusy", err, ran)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.timeout = 0
	if err := p.Do(ctx, "C", func() { ran = true }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("Do with a cancelled context = %v (ran %v)", err, ran)
	}
	close(done)
	waitFor(t, "idle", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.running == 0 && len(p.clients) == 0 })
	if err := p.Do(context.Background(), "B", func() { ran = true }); err != nil || !ran {
		t.Fatalf("Do when idle = %v, ran %v", err, ran)
	}
}
