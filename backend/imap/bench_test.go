package imap

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// BenchmarkFetch fetches a 1,000-message folder: FLAGS and ENVELOPE, then
// whole messages. It reports messages per second.
func BenchmarkFetch(b *testing.B) {
	const n = 1000
	e := newEnv(b, nil)
	body := strings.Repeat("Some text of a typical length for a short mail message.\r\n", 40)
	for i := 0; i < n; i++ {
		if _, err := e.store.Deliver("alice@example.org", strings.NewReader(testMessage(fmt.Sprintf("message %d", i), body))); err != nil {
			b.Fatal(err)
		}
	}
	c := e.login("alice@example.org", nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != n {
		b.Fatalf("SELECT: %v, %d messages", err, sel.NumMessages)
	}
	all := imap.SeqSet{{Start: 1, Stop: n}}
	for _, bc := range []struct {
		name string
		opt  *imap.FetchOptions
	}{
		{"FlagsEnvelope", &imap.FetchOptions{Flags: true, Envelope: true}},
		{"BodyPeek", &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				msgs, err := c.Fetch(all, bc.opt).Collect()
				if err != nil || len(msgs) != n {
					b.Fatalf("FETCH: %v, %d messages", err, len(msgs))
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "messages/s")
		})
	}
}
