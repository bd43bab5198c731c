package tcpauth

import (
	"context"
	"fmt"
	"testing"

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
