package maildir

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkDeliver delivers 10 KB messages from 8 goroutines, with the
// fsyncs of a real delivery, into 8 users' INBOXes: the LMTP delivery
// target.
func BenchmarkDeliver(b *testing.B) {
	const goroutines = 8
	s, err := Open(b.TempDir(), Options{Hostname: "bench.example"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KB
	for g := 0; g < goroutines; g++ {
		if _, err := s.Mailbox(fmt.Sprintf("user%d@bench.example", g)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	var n atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d@bench.example", g)
			for n.Add(1) <= int64(b.N) {
				if _, err := s.Deliver(user, bytes.NewReader(msg)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
