package audit

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The line's shape is what docs/logs.md promises and what operators'
// filters match: a change here breaks them.
func TestLineFormat(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	Log(log, Event{Proto: "tcpauth", Op: "rename", User: "a@x", To: "b@x", Client: "192.0.2.7", By: BySecret})
	Log(log, Event{Proto: "ldap", Op: "modify", User: "a@x", Client: "192.0.2.7", By: "cn=admin,dc=tohost"})
	Log(log, Event{Proto: "cli", Op: "import", User: "users.csv", By: "root"}, "created", 3)
	want := []string{
		`level=INFO msg=audit proto=tcpauth op=rename user=a@x to=b@x client=192.0.2.7 by=secret`,
		`level=INFO msg=audit proto=ldap op=modify user=a@x client=192.0.2.7 by="cn=admin,dc=tohost"`,
		`level=INFO msg=audit proto=cli op=import user=users.csv by=root created=3`,
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for i, l := range lines {
		_, rest, _ := strings.Cut(l, " ") // the time
		if rest != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, rest, want[i])
		}
	}
}
