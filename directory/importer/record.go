package importer

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
)

// Record is one entry of an input file as its reader understood it.
type Record struct {
	Line int64  // the line the record starts on (1-based)
	Raw  string // the record's text as read, without the final line break
	// Name is the user name as written ("" when the reader could not tell).
	Name string
	// Password is the stored form ("{SCHEME}..."), or cleartext when
	// Plain is set (hashed with the configured scheme on import).
	Password string
	Plain    bool
	Fields   []directory.Field
	// Err is set when the record cannot be read (bad quoting, bad syntax);
	// it is rejected with Err as the reason.
	Err error
	// NotUser marks an entry that is not a user (an LDIF ou, dc or
	// group): it is skipped and counted.
	NotUser bool
}

// recordError is a syntax error in a record; its message is the reason
// given in the report.
type recordError struct{ msg string }

func (e *recordError) Error() string { return e.msg }

func errorf(format string, args ...any) error {
	return &recordError{msg: fmt.Sprintf(format, args...)}
}

// storedPassword classifies a password value met in a file: a value with a
// known {SCHEME} is stored as it is, a bare crypt(3) string gets {CRYPT},
// anything else is cleartext. des says whether a 13-character crypt string
// (traditional DES crypt, as NWAuth writes) counts as crypt.
func storedPassword(v string, des bool) (stored string, plain bool) {
	switch {
	case password.HasScheme(v):
		return v, false
	case isBareCrypt(v, des):
		return "{CRYPT}" + v, false
	}
	return v, true
}

// cryptPrefixes are the "$id$" forms of crypt(3) strings, the same list
// package password recognizes (supported or not, so that a hash of an
// unsupported algorithm is never taken for a cleartext password).
var cryptPrefixes = []string{
	"$1$", "$apr1$", "$5$", "$6$", "$2a$", "$2b$", "$2y$", "$argon2id$", "$argon2i$",
	"$y$", "$gy$", "$7$", "$2x$", "$argon2d$", "$sha1$", "$md5$", "$md5,", "$3$",
}

func isBareCrypt(v string, des bool) bool {
	if strings.HasPrefix(v, "$") {
		for _, p := range cryptPrefixes {
			if strings.HasPrefix(v, p) {
				return true
			}
		}
		return false
	}
	if !des || len(v) != 13 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c == '.' || c == '/' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// exportPassword is the form a stored password takes in an export file, so
// that importing it stores the same value: with a {SCHEME}. A legacy bare
// crypt string gets {CRYPT}, legacy cleartext {PLAIN}.
func exportPassword(p string) string {
	switch {
	case password.HasScheme(p):
		return p
	case isBareCrypt(p, false):
		return "{CRYPT}" + p
	}
	return "{PLAIN}" + p
}

// validator turns records into entries.
type validator struct {
	hasher password.Hasher
	dry    bool // check only: do not hash cleartext passwords
}

// entry validates r. The error's message is the reason for the report.
func (v *validator) entry(r *Record) (directory.BulkEntry, error) {
	if r.Err != nil {
		return directory.BulkEntry{}, r.Err
	}
	if !utf8.ValidString(r.Name) {
		return directory.BulkEntry{}, errorf("name is not valid UTF-8")
	}
	name, err := directory.NormalizeName(r.Name)
	if err != nil {
		return directory.BulkEntry{}, reason(err)
	}
	e := directory.BulkEntry{Line: r.Line, Name: name, Display: r.Name}
	if !r.Plain || v.hasher.Scheme == password.SchemePlain { // stored as written
		if err := directory.ValidateHash(r.Password); err != nil {
			return directory.BulkEntry{}, reason(err)
		}
	}
	switch {
	case r.Password == "":
		return directory.BulkEntry{}, errorf("no password")
	case !storable(r.Password):
		return directory.BulkEntry{}, errorf("password is not valid UTF-8 or holds a NUL")
	case r.Plain && len(r.Password) > password.MaxPasswordLen:
		return directory.BulkEntry{}, errorf("password longer than %d bytes", password.MaxPasswordLen)
	case r.Plain && !v.dry:
		h, err := v.hasher.Hash(r.Password)
		if err != nil {
			return directory.BulkEntry{}, errorf("cannot hash the password: %v", err)
		}
		e.Password = h
	default:
		e.Password = r.Password
	}
	if len(r.Fields) > directory.MaxFields { // before the search for repeats, len × len
		return directory.BulkEntry{}, errorf("too many fields: %d, at most %d", len(r.Fields), directory.MaxFields)
	}
	// The record's fields are used as they are unless some must go.
	clean := true
	for i, f := range r.Fields {
		if err := directory.ValidateField(f); err != nil {
			return directory.BulkEntry{}, reason(err)
		}
		if !storable(f.Value) {
			return directory.BulkEntry{}, errorf("value of %s is not valid UTF-8", f.Label)
		}
		if f.Value == "" {
			clean = false // an empty value means no such field
			continue
		}
		for _, g := range r.Fields[:i] {
			if g.Label == f.Label && g.Value != "" {
				return directory.BulkEntry{}, errorf("field %s given twice", f.Label)
			}
		}
	}
	e.Fields = r.Fields
	if !clean {
		e.Fields = make([]directory.Field, 0, len(r.Fields))
		for _, f := range r.Fields {
			if f.Value != "" {
				e.Fields = append(e.Fields, f)
			}
		}
	}
	if err := directory.CheckBounds(e.Name, e.Display, e.Password, e.Fields); err != nil {
		return directory.BulkEntry{}, reason(err)
	}
	return e, nil
}

// reason turns a directory validation error into a report reason:
// "user name contains a space" reads "name contains a space" after
// `user "a b@x":`.
func reason(err error) error {
	var in *directory.InputError
	if errors.As(err, &in) {
		return &recordError{msg: strings.TrimPrefix(in.Msg, "user ")}
	}
	return err
}

// storable: valid UTF-8 without NUL, which every store can hold.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
