package tcpauth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/cache"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/protocol/authent"
)

// benchConn returns a connection state able to dispatch requests against a
// bbolt store holding n users u<i>@bench.example, with {SSHA} passwords.
func benchConn(b *testing.B, n int) *conn {
	st, err := bolt.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	svc := directory.NewService(cache.NewLocal(st, cache.LocalOptions{}), directory.Config{Scheme: password.SchemeSSHA})
	ctx := context.Background()
	for i := 0; i < n; i++ {
		fields := []directory.Field{{Label: "tohost", Value: "backend1.example"}, {Label: "quota", Value: "1073741824"}}
		if _, err := svc.Set(ctx, fmt.Sprintf("u%d@bench.example", i), fmt.Sprintf("pw-%d", i), fields); err != nil {
			b.Fatal(err)
		}
	}
	return &conn{srv: New(svc, Config{}), ctx: ctx}
}

func benchDispatch(b *testing.B, line string, want byte) {
	c := benchConn(b, 100)
	var rep authent.Reply
	raw := []byte(line)
	b.ReportAllocs()
	for b.Loop() {
		req, err := authent.ParseRequest(raw)
		if err != nil {
			b.Fatal(err)
		}
		rep.Buf = rep.Buf[:0]
		c.handle(&req, &rep)
		if rep.Buf[0] != want {
			b.Fatalf("reply %q", rep.Buf)
		}
	}
}

// BenchmarkDispatchLookup: parse + dispatch + reply of one lookup.
func BenchmarkDispatchLookup(b *testing.B) { benchDispatch(b, "lookup u42@bench.example\r\n", '+') }

// BenchmarkDispatchCheckSSHA: a check with an {SSHA} hash; the
// verification cache answers after the first round.
func BenchmarkDispatchCheckSSHA(b *testing.B) {
	benchDispatch(b, "check u42@bench.example pw-42 10.0.0.1\r\n", '+')
}

// BenchmarkDispatchLookupMissing: an unknown user.
func BenchmarkDispatchLookupMissing(b *testing.B) {
	benchDispatch(b, "lookup nobody@bench.example\r\n", '-')
}

// benchServer starts a server over a cached bbolt store holding n users
// u<i>@bench.example and returns a connection to it.
func benchServer(b *testing.B, n int, o setup) *client {
	if o.wrap == nil {
		o.wrap = func(s directory.Store) directory.Store { return cache.NewLocal(s, cache.LocalOptions{}) }
	}
	h := startWith(b, Config{}, o)
	c := h.dial(b)
	c.nc.SetDeadline(time.Time{})
	var req strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&req, "set u%d@bench.example pw-%d tohost=backend1.example quota=1073741824\r\n", i, i)
	}
	if _, err := io.WriteString(c.nc, req.String()); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if l := c.line(); !strings.HasPrefix(l, "+OK") {
			b.Fatal(l)
		}
	}
	return c
}

// BenchmarkConnLookup: one lookup at a time over a loopback connection,
// each waiting for its reply (a client that does not pipeline).
func BenchmarkConnLookup(b *testing.B) {
	c := benchServer(b, 100, setup{})
	b.ReportAllocs()
	for b.Loop() {
		c.send("lookup u42@bench.example")
		if l := c.line(); l[0] != '+' {
			b.Fatal(l)
		}
	}
}

// benchPipelined writes b.N requests (line(i)) from one goroutine while the
// benchmark reads the b.N replies: the throughput of a pipelining client.
func benchPipelined(b *testing.B, c *client, line func(i int) string) {
	b.ReportAllocs()
	b.ResetTimer()
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c.nc, 32<<10)
		for i := 0; i < b.N; i++ {
			if _, err := w.WriteString(line(i)); err != nil {
				werr <- err
				return
			}
		}
		werr <- w.Flush()
	}()
	for i := 0; i < b.N; i++ {
		if l := c.line(); l[0] != '+' {
			b.Fatalf("reply %d: %s", i, l)
		}
	}
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConnLookupPipelined: lookups of 100 users, pipelined.
func BenchmarkConnLookupPipelined(b *testing.B) {
	c := benchServer(b, 100, setup{})
	benchPipelined(b, c, func(i int) string { return fmt.Sprintf("lookup u%d@bench.example\r\n", i%100) })
}

// BenchmarkConnCheckPipelined: checks of 100 {SSHA} users, pipelined; the
// verification cache answers after the first round.
func BenchmarkConnCheckPipelined(b *testing.B) {
	c := benchServer(b, 100, setup{})
	benchPipelined(b, c, func(i int) string { return fmt.Sprintf("check u%d@bench.example pw-%d\r\n", i%100, i%100) })
}

// BenchmarkConnCheckPipelinedBcrypt: checks of {BLF-CRYPT} users (cost 10)
// with the verification cache off, pipelined: each check costs a hash.
func BenchmarkConnCheckPipelinedBcrypt(b *testing.B) {
	c := benchServer(b, 8, setup{dir: directory.Config{Scheme: password.SchemeBlfCrypt, VerifyCacheSize: -1}})
	benchPipelined(b, c, func(i int) string { return fmt.Sprintf("check u%d@bench.example pw-%d\r\n", i%8, i%8) })
}
