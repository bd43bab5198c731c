package directory

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tohost/tohost/protocol/authent"
)

// MaxNameLen is the longest accepted user name in bytes.
const MaxNameLen = 320

// NormalizeName checks a user name against the rules of docs/protocol.md
// ("User names") and returns its normalized form, the key it is stored
// under: FoldName of it.
func NormalizeName(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	return FoldName(name), nil
}

// FoldName is authent.FoldName: the directory keys names by it, and the
// backend names Maildirs by it, so the two can never disagree.
func FoldName(name string) string { return authent.FoldName(name) }

// ValidateName returns an *InputError saying what is wrong with name, or nil.
func ValidateName(name string) error {
	if name == "" {
		return inputErrorf("empty user name")
	}
	if len(name) > MaxNameLen {
		return inputErrorf("user name longer than %d bytes", MaxNameLen)
	}
	ats := 0
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == ' ':
			return inputErrorf("user name contains a space")
		case c < 0x20 || c == 0x7f:
			return inputErrorf("user name contains a control character")
		case c == '"':
			return inputErrorf("user name contains a quote")
		case c == ':':
			return inputErrorf("user name contains a colon")
		case c == '@':
			ats++
		}
	}
	if ats > 1 {
		return inputErrorf("user name contains more than one @")
	}
	if !utf8.ValidString(name) {
		// Every store keeps it byte for byte or not at all: no two
		// names may become one on the way in.
		return inputErrorf("user name is not valid UTF-8")
	}
	return nil
}

// ValidateHash returns an *InputError if a password given with its
// {SCHEME}, to be stored as it is, holds a control character: no hash
// does, and every export format writes it on one line.
func ValidateHash(h string) error {
	for i := 0; i < len(h); i++ {
		if c := h[i]; c < 0x20 || c == 0x7f {
			return inputErrorf("password hash contains a control character")
		}
	}
	return nil
}

// ValidateField returns an *InputError if f cannot be stored and written
// back as label="value": the label and value rules are the line protocol's
// (authent.ValidLabel, authent.ValidValue), for every way in (TCPAuth,
// LDAP, imports) and out (replies, exports).
func ValidateField(f Field) error {
	if f.Label == "" {
		return inputErrorf("empty field label")
	}
	if !authent.ValidLabel(f.Label) {
		return inputErrorf("bad field label %q", f.Label)
	}
	if !authent.ValidValue(f.Value) {
		return inputErrorf("bad value for %s", f.Label)
	}
	return nil
}

// Bounds of one record. Every real user fits in them many times over; they
// keep one user from growing without end (a `set` that adds labels again
// and again) and so keep every reply, cache entry and export line of a
// user bounded.
const (
	MaxFields      = 256
	MaxRecordBytes = 64 << 10
)

// RecordSize is what the bounds measure: the bytes of the name, how it is
// written, the stored password and every label and value.
func RecordSize(name, display, password string, fields []Field) int {
	n := len(name) + len(display) + len(password)
	for _, f := range fields {
		n += len(f.Label) + len(f.Value)
	}
	return n
}

// CheckBounds returns an *InputError if a record with these parts is over
// MaxFields or MaxRecordBytes.
func CheckBounds(name, display, password string, fields []Field) error {
	if len(fields) > MaxFields {
		return inputErrorf("too many fields: %d, at most %d", len(fields), MaxFields)
	}
	if n := RecordSize(name, display, password, fields); n > MaxRecordBytes {
		return inputErrorf("record too large: %d bytes, at most %d", n, MaxRecordBytes)
	}
	return nil
}

// checkGrowth applies the bounds to a write that makes old (nil: none)
// into u. A record stored before the bounds existed may be over them: a
// write that does not make it bigger is still allowed, so that it can be
// trimmed.
func checkGrowth(old, u *User) error {
	err := CheckBounds(u.Name, u.Display, u.Password, u.Fields)
	if err == nil || old == nil {
		return err
	}
	if len(u.Fields) <= len(old.Fields) &&
		RecordSize(u.Name, u.Display, u.Password, u.Fields) <= RecordSize(old.Name, old.Display, old.Password, old.Fields) {
		return nil
	}
	return err
}

// Domain returns the part of a name after '@', or "".
func Domain(name string) string {
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[i+1:]
	}
	return ""
}

// InputError is a request that can never succeed as written. Its message
// says what was wrong and is safe to send to the client.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}
