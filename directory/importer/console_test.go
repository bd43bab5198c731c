package importer

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := Group(n); got != want {
			t.Errorf("Group(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSummaryAndLines(t *testing.T) {
	s := Stats{Format: CSV, Read: 1500, Created: 1000, Updated: 400, Rejected: 100, Elapsed: 2 * time.Second}
	got := Summary("users.csv", "postgres", s)
	for _, want := range []string{"import users.csv (csv) into postgres", "read 1,500", "imported 1,000",
		"updated 400", "rejected 100", "2.00 s", "700 users/s"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
	var out bytes.Buffer
	c := NewConsole(&out, Input{Name: "/data/users.csv"}, "lines")
	c.Note("a note")
	c.Done()
	if out.String() != "a note\n" {
		t.Errorf("console wrote %q", out.String())
	}
}
