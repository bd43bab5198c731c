// Package directory is the user database as a service: the User record,
// the rules for names and fields, the Store interface every storage
// back-end implements, and the Service that the protocol front ends
// (TCPAuth, LDAP) call.
package directory

import (
	"strings"
	"time"
)

// Field is one label="value" pair of a user's info.
type Field struct {
	Label string
	Value string
}

// User is one directory record.
type User struct {
	Name     string  // normalized (lower-case) name: the key
	Display  string  // the name as it was first written
	Password string  // stored hash, "{SCHEME}..." (or legacy cleartext)
	Fields   []Field // in the order their labels were first set
	Created  time.Time
	Updated  time.Time
	Version  uint64 // incremented on every change
}

// Well-known field labels.
const (
	LabelTohost = "tohost"
	LabelStatus = "status"
)

// Get returns the value of label, or "" when the user has no such field.
func (u *User) Get(label string) string {
	for _, f := range u.Fields {
		if f.Label == label {
			return f.Value
		}
	}
	return ""
}

// Tohost returns the backend that holds the user's mailbox ("" if unset).
func (u *User) Tohost() string { return u.Get(LabelTohost) }

// Clone returns a deep copy (Fields is the only shared part).
func (u *User) Clone() *User {
	c := *u
	c.Fields = append([]Field(nil), u.Fields...)
	return &c
}

// refusedStatus lists the `status` values that refuse check (docs/protocol.md,
// "Info fields").
var refusedStatus = []string{"suspended", "cancelled", "banned", "closed", "paydue", "payup"}

// LoginAllowed reports whether the account status allows a password check to
// succeed. An absent status, "ok", "good" and any status not known to refuse
// allow it.
func (u *User) LoginAllowed() bool {
	s := u.Get(LabelStatus)
	if s == "" {
		return true
	}
	for _, r := range refusedStatus {
		if strings.EqualFold(s, r) {
			return false
		}
	}
	return true
}

// MergeFields applies changes to fields in order: a new label is appended,
// an existing label keeps its place and gets the new value, and an empty
// value removes the label. The result is a new slice.
func MergeFields(fields, changes []Field) []Field {
	out := append([]Field(nil), fields...)
	for _, c := range changes {
		i := indexLabel(out, c.Label)
		switch {
		case c.Value == "" && i >= 0:
			out = append(out[:i], out[i+1:]...)
		case c.Value == "":
		case i >= 0:
			out[i].Value = c.Value
		default:
			out = append(out, c)
		}
	}
	return out
}

func indexLabel(fields []Field, label string) int {
	for i, f := range fields {
		if f.Label == label {
			return i
		}
	}
	return -1
}
