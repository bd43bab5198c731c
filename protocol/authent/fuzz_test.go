package authent

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseRequest: the parser never panics, and nothing it accepts can
// break a reply line when echoed back (no CR, LF, NUL in any argument; no
// quote in a field value).
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"lookup bob@test.com", "check a b 1.2.3.4", `set a (NULL) q="1 2" r=s`,
		"search *x? -from 1 -max 2", "rename a b", "auth x", "del a", "help", "",
		`set a b q="`, "lookup a\x00", "set a b =x", "SEARCH x -MAX 3",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err != nil {
			return
		}
		args := []string{req.User, req.Password, req.IP, req.NewUser, req.Pattern, req.Secret}
		for _, a := range args {
			if strings.ContainsAny(a, "\r\n\x00 ") {
				t.Fatalf("argument %q of %q holds a separator", a, line)
			}
		}
		for _, fl := range req.Fields {
			if !ValidLabel(fl.Label) || !ValidValue(fl.Value) {
				t.Fatalf("accepted bad field %+v from %q", fl, line)
			}
		}
		if len(bytes.TrimRight(line, "\r\n \t")) > MaxLine {
			t.Fatalf("accepted a line over MaxLine")
		}
	})
}

// FuzzParseFields: accepted fields always survive AppendField → ParseFields.
func FuzzParseFields(f *testing.F) {
	for _, s := range []string{`a="b c" d=e`, `x=""`, `q="`, `=v`, `a=b=c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fields, err := ParseFields(s)
		if err != nil {
			return
		}
		var b []byte
		for _, fl := range fields {
			b = AppendField(b, fl.Label, fl.Value)
		}
		again, err := ParseFields(string(b))
		if err != nil || len(again) != len(fields) {
			t.Fatalf("%q → %q does not parse back: %v", s, b, err)
		}
		for i := range fields {
			if again[i] != fields[i] {
				t.Fatalf("field %d changed: %+v → %+v", i, fields[i], again[i])
			}
		}
	})
}
