package directory

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func f(label, value string) Field { return Field{Label: label, Value: value} }

func TestMergeFields(t *testing.T) {
	old := []Field{f("a", "1"), f("b", "2"), f("c", "3")}
	got := MergeFields(old, []Field{f("b", "20"), f("d", "4"), f("a", ""), f("zz", ""), f("a", "10")})
	want := []Field{f("b", "20"), f("c", "3"), f("d", "4"), f("a", "10")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merge = %v, want %v", got, want)
	}
	if old[1].Value != "2" {
		t.Fatal("MergeFields modified its input")
	}
}

func TestLoginAllowed(t *testing.T) {
	for status, want := range map[string]bool{"": true, "ok": true, "GOOD": true, "vip": true,
		"suspended": false, "Cancelled": false, "banned": false, "closed": false, "paydue": false, "payup": false} {
		u := &User{}
		if status != "" {
			u.Fields = []Field{f("status", status)}
		}
		if got := u.LoginAllowed(); got != want {
			t.Errorf("status %q: allowed = %v", status, got)
		}
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"bob", "bob@test.com", "Bob.Smith+tag@Example.COM", strings.Repeat("a", MaxNameLen)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("%q refused: %v", n, err)
		}
	}
	bad := map[string]string{
		"":                                "empty",
		strings.Repeat("a", MaxNameLen+1): "longer than 320",
		"a b":                             "space",
		"a\tb":                            "control",
		"a\x7fb":                          "control",
		`a"b`:                             "quote",
		"a:b":                             "colon",
		"a@b@c":                           "more than one @",
		"victim\x80@x.com":                "not valid UTF-8",
		"\xff@x":                          "not valid UTF-8",
	}
	for n, want := range bad {
		err := ValidateName(n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", n, err, want)
		}
	}
	for in, want := range map[string]string{
		"Bob@Test.COM":      "bob@test.com",
		"Élodie@X.com":      "Élodie@x.com", // only ASCII letters fold
		"\u212Aelvin@x.com": "\u212Aelvin@x.com",
		"İnci@x":            "İnci@x",
	} {
		if n, err := NormalizeName(in); n != want || err != nil {
			t.Errorf("normalize %q = %q, %v, want %q", in, n, err, want)
		}
	}
}

func TestValidateField(t *testing.T) {
	for _, fl := range []Field{f("", "x"), f("a b", "x"), f("a=", "x"), f("q", `x"y`), f("q", "x\ny"), f("q", "x\x00")} {
		if ValidateField(fl) == nil {
			t.Errorf("%+v accepted", fl)
		}
	}
	if err := ValidateField(f("a.b-c_D9", "any value = with spaces")); err != nil {
		t.Error(err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	u := &User{Name: "bob@x", Display: "Bob@X", Password: "{SSHA}abc", Version: 7,
		Fields:  []Field{f("tohost", "h1"), f("name", "Bob ünïcode"), f("e", "")},
		Created: time.Unix(1700000000, 123), Updated: time.Unix(1700000001, 456)}
	b, _ := u.MarshalBinary()
	var got User
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !got.Created.Equal(u.Created) || !got.Updated.Equal(u.Updated) || got.Display != u.Display {
		t.Fatalf("round trip: %+v", got)
	}
	if got.Name != u.Name || got.Password != u.Password || !reflect.DeepEqual(got.Fields, u.Fields) || got.Version != 7 {
		t.Fatalf("round trip: %+v", got)
	}
	for i := 0; i < len(b); i++ {
		var x User
		if x.UnmarshalBinary(b[:i]) == nil {
			t.Fatalf("truncated record of %d bytes decoded", i)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	u := &User{Name: "a", Fields: []Field{{Label: "x", Value: "y"}}}
	b, _ := u.MarshalBinary()
	f.Add(b)
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var u User
		if u.UnmarshalBinary(data) != nil {
			return
		}
		again, _ := u.MarshalBinary()
		var v User
		if err := v.UnmarshalBinary(again); err != nil || len(v.Fields) != len(u.Fields) || v.Name != u.Name {
			t.Fatalf("re-encoding fails: %v", err)
		}
	})
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"bob", "bob@x", true}, {"BOB", "bob@x", true}, {"ob@", "bob@x", true}, {"zz", "bob@x", false},
		{"*", "", true}, {"b*", "bob@x", true}, {"*@x", "bob@x", true}, {"*@y", "bob@x", false},
		{"b?b@x", "bob@x", true}, {"b?b", "bob@x", false}, {"*o*o*", "foo", true}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaac", false},
		{"?", "", false}, {"a*b*c", "abxbxc", true}, {"j?rg@x", "jörg@x", true}, {"j??rg@x", "jörg@x", false},
	}
	for _, c := range cases {
		if got := NewMatch(c.pattern).Matches(c.name); got != c.want {
			t.Errorf("%q ~ %q = %v", c.pattern, c.name, got)
		}
	}
	if p := NewMatch("User*@x").Prefix(); p != "user" {
		t.Errorf("prefix = %q", p)
	}
	if p := NewMatch("user").Prefix(); p != "" {
		t.Errorf("substring prefix = %q", p)
	}
}

func TestIsAnswer(t *testing.T) {
	for err, want := range map[error]bool{
		ErrNotFound: true, ErrExists: true, &InputError{Msg: "x"}: true,
		fmt.Errorf("wrapped: %w", ErrNotFound): true, &refusal{errors.New("no")}: true,
		ErrUnavailable: false, errors.New("disk full"): false, ErrBadCredentials: false,
	} {
		if got := IsAnswer(err); got != want {
			t.Errorf("IsAnswer(%v) = %v", err, got)
		}
	}
}

// TestValidateFieldLabelBytes: a label byte is allowed exactly when it is
// in [A-Za-z0-9_.-].
func TestValidateFieldLabelBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
		if got := ValidateField(f("a"+string([]byte{byte(c)})+"z", "v")) == nil; got != want {
			t.Errorf("label byte %#x: accepted %v, want %v", c, got, want)
		}
	}
}
