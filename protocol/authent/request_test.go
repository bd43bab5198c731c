package authent

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	cases := []struct {
		line string
		want Request
	}{
		{"lookup bob@test.com\r\n", Request{Cmd: Lookup, User: "bob@test.com", Max: -1}},
		{"LOOKUP  Bob@Test.com  \n", Request{Cmd: Lookup, User: "Bob@Test.com", Max: -1}},
		{"check bob@test.com xxx", Request{Cmd: Check, User: "bob@test.com", Password: "xxx", Max: -1}},
		{"check bob@test.com xxx 10.1.2.3", Request{Cmd: Check, User: "bob@test.com", Password: "xxx", IP: "10.1.2.3", Max: -1}},
		{"set bob@test.com bob", Request{Cmd: Set, User: "bob@test.com", Password: "bob", Max: -1}},
		{`set bob@test.com (NULL) quota="200" fwd="fred@test.com"`, Request{Cmd: Set, User: "bob@test.com",
			Fields: []Field{{"quota", "200"}, {"fwd", "fred@test.com"}}, Max: -1}},
		{`set a@b {SSHA}abc= name="Bob Smith" x= tohost=h1:25`, Request{Cmd: Set, User: "a@b", Password: "{SSHA}abc=",
			Fields: []Field{{"name", "Bob Smith"}, {"x", ""}, {"tohost", "h1:25"}}, Max: -1}},
		{"del bob@test.com", Request{Cmd: Del, User: "bob@test.com", Max: -1}},
		{"search *@test.com -from 10 -max 5", Request{Cmd: Search, Pattern: "*@test.com", From: 10, Max: 5}},
		{"search bob", Request{Cmd: Search, Pattern: "bob", Max: -1}},
		{"rename a@b c@d", Request{Cmd: Rename, User: "a@b", NewUser: "c@d", Max: -1}},
		{"auth s3cret", Request{Cmd: Auth, Secret: "s3cret", Max: -1}},
		{"version", Request{Cmd: Version, Max: -1}},
		{"help", Request{Cmd: Help, Max: -1}},
		{"exit", Request{Cmd: Exit, Max: -1}},
		{"QUIT", Request{Cmd: Quit, Max: -1}},
		{"ping", Request{Cmd: Ping, Max: -1}},
	}
	for _, c := range cases {
		got, err := ParseRequest([]byte(c.line))
		if err != nil {
			t.Errorf("%q: %v", c.line, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.line, got, c.want)
		}
	}
}

func TestParseRequestErrors(t *testing.T) {
	cases := []struct {
		line string
		want string // substring of the error
	}{
		{"frobnicate x", "unknown command"},
		{"lookup", "missing user"},
		{"lookup a b", "too many arguments"},
		{"check a", "usage: check"},
		{"check a b c d", "password cannot contain spaces"},
		{"set a", "usage: set"},
		{`set a b quota="200`, "unterminated quote"},
		{`set a b quota`, "has no =value"},
		{`set a b bad!label="x"`, "bad label"},
		{`set a b q="x"y`, "bad value for q"},
		{"search", "usage: search"},
		{"search x -from", "bad number for -from"},
		{"search x -from -1", "bad number"},
		{"search x -sort name", "bad number"},
		{"search x -sort 1", "unknown search option -sort"},
		{"rename a", "usage: rename"},
		{"auth", "missing secret"},
		{"lookup a\x00b", "bad characters"},
		{"lookup " + strings.Repeat("a", MaxLine), "line too long"},
	}
	for _, c := range cases {
		_, err := ParseRequest([]byte(c.line))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.line, err, c.want)
		}
	}
	if _, err := ParseRequest([]byte("lookup " + strings.Repeat("a", MaxLine))); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: %v is not ErrLineTooLong", err)
	}
}

func TestParseFieldsRoundTrip(t *testing.T) {
	in := []Field{{"tohost", "backend1.example"}, {"name", "Bob  Smith"}, {"empty", ""}, {"a.b-c_d", "x=y"}}
	var b []byte
	for _, f := range in {
		b = AppendField(b, f.Label, f.Value)
	}
	got, err := ParseFields(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip: got %+v want %+v", got, in)
	}
}

func TestReplyCapsErrorLines(t *testing.T) {
	var r Reply
	r.ErrUser(strings.Repeat("é", 100), "does not exist")
	line := strings.TrimSuffix(string(r.Buf), "\r\n")
	if len(line) > MaxErrLine || !strings.HasPrefix(line, "-ERR ") {
		t.Fatalf("error line %d bytes: %q", len(line), line)
	}
	if !strings.HasSuffix(string(r.Buf), "\r\n") || strings.Count(string(r.Buf), "\n") != 1 {
		t.Fatalf("bad line ending: %q", r.Buf)
	}
	r = Reply{LF: true}
	r.OK("x")
	if string(r.Buf) != "+OK x\n" {
		t.Fatalf("LF reply = %q", r.Buf)
	}
}

func BenchmarkParseLookup(b *testing.B) {
	line := []byte("lookup user0012345@domain45.example\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(line); err != nil {
			b.Fatal(err)
		}
	}
}
