package ldap

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/cache"
)

// The benchmarks drive the server over loopback with go-ldap at 16
// connections, as the reference LDAP load generator does (b.RunParallel
// with parallelism 16/GOMAXPROCS goroutines per CPU), against 10,000 users
// with {SSHA} hashes behind the in-process cache, as `tohost directory`
// runs.

const benchUsers = 10_000

func benchName(i int) string { return fmt.Sprintf("user%07d@domain%02d.example", i, i%100) }

func sshaOf(pw string, i int) string {
	salt := []byte(fmt.Sprintf("%08d", i))
	sum := sha1.Sum(append([]byte(pw), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(sum[:], salt...))
}

func benchServer(b *testing.B) *harness {
	h := start(b, options{cfg: Config{AnonymousRead: true},
		wrap: func(s directory.Store) directory.Store { return cache.NewLocal(s, cache.LocalOptions{}) }})
	ctx := context.Background()
	for i := 0; i < benchUsers; i++ {
		fields := []directory.Field{{Label: "tohost", Value: "backend1.example"}, {Label: "quota", Value: "1073741824"},
			{Label: "name", Value: "Alice Smith"}}
		if _, err := h.svc.Set(ctx, benchName(i), sshaOf(fmt.Sprintf("pw-%07d", i), i), fields); err != nil {
			b.Fatal(err)
		}
	}
	return h
}

func parallel16(b *testing.B, h *harness, op func(c *goldap.Conn, i int) error) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((16 + procs - 1) / procs) // 16 connections
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := goldap.DialURL("ldap://" + h.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		r := rand.New(rand.NewPCG(seed.Add(1), 1))
		for pb.Next() {
			if err := op(c, r.IntN(benchUsers)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkSearchEquality: (uid=U) under the base, subtree, four
// attributes, as loadgen -mode ldap-search asks.
func BenchmarkSearchEquality(b *testing.B) {
	h := benchServer(b)
	attrs := []string{"mail", "mailHost", "cn", "quota"}
	parallel16(b, h, func(c *goldap.Conn, i int) error {
		res, err := c.Search(goldap.NewSearchRequest(testBase, goldap.ScopeWholeSubtree, 0, 0, 0, false,
			"(uid="+benchName(i)+")", attrs, nil))
		if err == nil && len(res.Entries) != 1 {
			err = fmt.Errorf("%d entries", len(res.Entries))
		}
		return err
	})
}

// BenchmarkBindSSHA: a simple bind as the user's DN; the verification
// cache answers after each user's first bind.
func BenchmarkBindSSHA(b *testing.B) {
	h := benchServer(b)
	parallel16(b, h, func(c *goldap.Conn, i int) error {
		return c.Bind("uid="+benchName(i)+",ou=users,"+testBase, fmt.Sprintf("pw-%07d", i))
	})
}
