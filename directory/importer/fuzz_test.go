package importer_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/importer"
	"github.com/tohost/tohost/directory/password"
)

// checkedStore is a BulkStore that keeps nothing but checks every entry
// the importer hands it: whatever the input, nothing that could not be
// stored and written back reaches a store.
type checkedStore struct {
	directory.Store
	mu      sync.Mutex
	written int64
	bad     []string
}

func (s *checkedStore) BeginBulk(context.Context, directory.BulkOptions) (directory.Bulk, error) {
	return checkedBulk{s}, nil
}

type checkedBulk struct{ s *checkedStore }

func (checkedBulk) Concurrency() int                                { return 2 }
func (checkedBulk) Finish(context.Context, []string) (int64, error) { return 0, nil }
func (checkedBulk) Close(context.Context) error                     { return nil }

func (b checkedBulk) Write(_ context.Context, entries []directory.BulkEntry) (directory.BulkResult, error) {
	var bad []string
	for _, e := range entries {
		if problem := entryProblem(e); problem != "" {
			bad = append(bad, problem)
		}
	}
	b.s.mu.Lock()
	b.s.written += int64(len(entries))
	b.s.bad = append(b.s.bad, bad...)
	b.s.mu.Unlock()
	return directory.BulkResult{Created: len(entries)}, nil
}

// entryProblem says what is wrong with an entry a store was given, or "".
func entryProblem(e directory.BulkEntry) string {
	name, err := directory.NormalizeName(e.Display)
	switch {
	case err != nil:
		return "name " + err.Error()
	case name != e.Name:
		return "name " + e.Name + " is not the normal form of " + e.Display
	case e.Password == "" || !utf8.ValidString(e.Password) || strings.ContainsAny(e.Password, "\r\n\x00"):
		return "password unusable for " + e.Name
	case !password.HasScheme(e.Password):
		return "password of " + e.Name + " is not stored with a {SCHEME}"
	}
	labels := map[string]bool{}
	for _, f := range e.Fields {
		if err := directory.ValidateField(f); err != nil {
			return "field of " + e.Name + ": " + err.Error()
		}
		if !utf8.ValidString(f.Value) {
			return "field " + f.Label + " of " + e.Name + " is not UTF-8"
		}
		if labels[f.Label] { // labels are case-sensitive: x and X are two fields
			return "field " + f.Label + " twice in " + e.Name
		}
		labels[f.Label] = true
	}
	return ""
}

// FuzzImport reads arbitrary input as each format: the reader never
// panics, every record is counted once (read = loaded + rejected + not
// users), and every entry it passes on is valid.
func FuzzImport(f *testing.F) {
	for _, seed := range []string{
		"user,password_hash,tohost,quota\na@x,{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w==,b1,10\n\"b@x\",\"{SSHA}x\",\"b\"\"2\",\n",
		"user,password,name\nc@x,secret,\"C, D\"\nbad name,x,y\n",
		"a@x:{ssha}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w==:tohost=\"b1\" quota=\"10\"\nb@x:$6$s$h:\nc@x:plain:name=\"x\ny\n",
		"version: 1\n\ndn: uid=a@x,ou=users,dc=x\nuid: a@x\nuserPassword:: e1NTSEF9eHl6\nmailHost: b1\ncn: A\n  long\n\ndn: dc=x\ndc: x\n\n",
		"dn: uid=b,dc=x\nuid: b@x\nuserPassword: {SSHA}x\ndescription:< file:///etc/passwd\n\ndn: cn=g,dc=x\nobjectClass: groupOfNames\n",
	} {
		for i := range importer.Formats {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, format uint8, data []byte) {
		s := &checkedStore{}
		st, err := importer.Import(context.Background(), s, importer.Input{Name: "fuzz", Size: int64(len(data)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }},
			importer.Options{Format: importer.Formats[int(format)%len(importer.Formats)], Scheme: "SSHA", BatchSize: 3})
		if len(s.bad) > 0 {
			t.Fatalf("invalid entries reached the store: %q", s.bad)
		}
		if err != nil {
			return // a reader may give up on input that is not its format
		}
		if st.Created != s.written || st.Read != st.Loaded()+st.Skipped+st.Rejected+st.NotUsers {
			t.Fatalf("counts do not add up: %+v, %d written", st, s.written)
		}
	})
}
