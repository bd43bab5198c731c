package password

import (
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestSlowHashesAreBounded: however many verifications and hashes of slow
// schemes are asked for at once, no more than the slots are computed at
// once, and every one of them goes through a slot.
func TestSlowHashesAreBounded(t *testing.T) {
	saved := hashSlots
	hashSlots = make(chan struct{}, 1)
	defer func() { hashSlots = saved }()
	// Cheap costs: the test is about how many run at once.
	b, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	sha, err := Hash(SchemeCrypt, "pw")
	if err != nil {
		t.Fatal(err)
	}
	stored := []string{"{BLF-CRYPT}" + string(b), sha}
	calls0 := slowCalls.Load()
	slowPeak.Store(0)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for _, h := range stored {
				if ok, err := Verify(h, "pw"); !ok || err != nil {
					t.Errorf("verify %s: %v %v", h, ok, err)
				}
			}
			if i%4 == 0 {
				if _, err := Hash(SchemeCrypt, "pw"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got, want := slowCalls.Load()-calls0, int64(n*len(stored)+n/4); got != want {
		t.Errorf("%d slow hashes went through a slot, want %d", got, want)
	}
	if p := slowPeak.Load(); p != 1 {
		t.Errorf("%d slow hashes computed at once, want 1 (the slots)", p)
	}
}
