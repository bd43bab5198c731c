package penalty

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestCurve(t *testing.T) {
	now := time.Unix(1000, 0)
	p := New[netip.Addr](Config{Base: time.Second, Max: 5 * time.Second, Forget: time.Minute})
	p.now = func() time.Time { return now }
	ip := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")
	if d := p.Delay(ip); d != 0 {
		t.Fatalf("no failures: %v", d)
	}
	for i, want := range []time.Duration{1, 2, 4, 5, 5} {
		p.Failed(ip)
		if d := p.Delay(ip); d != want*time.Second {
			t.Fatalf("after %d failures: %v, want %v", i+1, d, want*time.Second)
		}
	}
	if d := p.Delay(other); d != 0 {
		t.Fatalf("another address pays: %v", d)
	}
	p.Succeeded(ip)
	if d := p.Delay(ip); d != 0 {
		t.Fatalf("after a success: %v", d)
	}
	p.Failed(ip)
	p.Failed(ip)
	now = now.Add(2 * time.Minute)
	if d := p.Delay(ip); d != 0 {
		t.Fatalf("after the forget time: %v", d)
	}
	p.Failed(ip)
	if d := p.Delay(ip); d != time.Second {
		t.Fatalf("a failure after the forget time starts over: %v", d)
	}
}

func TestBoundedMemory(t *testing.T) {
	p := New[netip.Addr](Config{Size: 100})
	for i := range 10_000 {
		p.Failed(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if n := p.Len(); n > 100 {
		t.Fatalf("%d addresses remembered, want at most 100", n)
	}
	last := netip.AddrFrom4([4]byte{10, 0, 39, 15}) // i = 9999
	if p.Delay(last) == 0 {
		t.Fatal("the latest failure was evicted")
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	p := New[netip.Addr](Config{Base: time.Hour, Max: time.Hour})
	ip := netip.MustParseAddr("192.0.2.1")
	p.Failed(ip)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx, ip); err != context.Canceled {
		t.Fatalf("Wait = %v, want the context's error", err)
	}
	var none *Penalty[netip.Addr]
	if none.Delay(ip) != 0 {
		t.Fatal("a nil Penalty delays")
	}
}

// TestCooling: inside the window after a failure an attempt is too soon;
// the window grows with the failures, and a success ends it.
func TestCooling(t *testing.T) {
	now := time.Unix(1000, 0)
	p := New[string](Config{Base: time.Second, Max: 4 * time.Second})
	p.now = func() time.Time { return now }
	if p.Cooling("a") {
		t.Fatal("cooling without a failure")
	}
	if n := p.Failed("a"); n != 1 {
		t.Fatalf("Failed = %d, want 1", n)
	}
	for _, c := range []struct {
		after time.Duration
		want  bool
	}{{0, true}, {999 * time.Millisecond, true}, {time.Second, false}} {
		now = time.Unix(1000, 0).Add(c.after)
		if got := p.Cooling("a"); got != c.want {
			t.Fatalf("%v after one failure: cooling %v, want %v", c.after, got, c.want)
		}
	}
	p.Failed("a") // the second: 2 s from now
	now = now.Add(1500 * time.Millisecond)
	if !p.Cooling("a") || p.Cooling("b") {
		t.Fatal("the window did not grow, or another key cools")
	}
	p.Succeeded("a")
	if p.Cooling("a") {
		t.Fatal("cooling after a success")
	}
}

// TestSucceededClearsOnlyItsKey: a success of one key leaves the others'
// windows (the count of remembered keys, which lets a Penalty with none
// skip its lock, follows the map).
func TestSucceededClearsOnlyItsKey(t *testing.T) {
	p := New[string](Config{Base: time.Hour, Max: time.Hour})
	p.Failed("a")
	p.Failed("b")
	p.Succeeded("a")
	if p.Cooling("a") || !p.Cooling("b") || p.Delay("b") != time.Hour {
		t.Fatalf("after a's success: a cooling %v, b cooling %v", p.Cooling("a"), p.Cooling("b"))
	}
	p.Succeeded("b")
	p.Succeeded("b")
	if p.Len() != 0 || p.held.Load() != 0 {
		t.Fatalf("%d keys, %d counted, after every success", p.Len(), p.held.Load())
	}
	p.Failed("c")
	if !p.Cooling("c") {
		t.Fatal("a failure after the map emptied is not seen")
	}
}
