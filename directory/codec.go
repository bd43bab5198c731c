package directory

import (
	"encoding/binary"
	"errors"
	"time"
)

// The binary record format shared by the stores and caches that keep
// serialized users (bbolt values, Redis entries):
//
//	version byte (1) | name | display | password | created | updated |
//	record version | field count | (label | value)...
//
// Strings are uvarint length + bytes, times are varint Unix nanoseconds,
// counts are uvarints. Decoding makes one string of the whole record (or
// takes one, UnmarshalString) and slices every string out of it.
const codecVersion = 1

var errCorrupt = errors.New("corrupt user record")

// MarshalBinary encodes u in the record format.
func (u *User) MarshalBinary() ([]byte, error) {
	return u.AppendBinary(nil), nil
}

// AppendBinary appends u's encoding to b.
func (u *User) AppendBinary(b []byte) []byte {
	b = append(b, codecVersion)
	b = appendString(b, u.Name)
	b = appendString(b, u.Display)
	b = appendString(b, u.Password)
	b = binary.AppendVarint(b, unixNano(u.Created))
	b = binary.AppendVarint(b, unixNano(u.Updated))
	b = binary.AppendUvarint(b, u.Version)
	b = binary.AppendUvarint(b, uint64(len(u.Fields)))
	for _, f := range u.Fields {
		b = appendString(b, f.Label)
		b = appendString(b, f.Value)
	}
	return b
}

// UnmarshalBinary decodes a record; data is not retained.
func (u *User) UnmarshalBinary(data []byte) error {
	return u.UnmarshalString(string(data))
}

// UnmarshalString decodes a record held in a string. The user's strings
// are slices of rec (a string never changes, so they need no copy): a
// decode costs the Fields slice alone.
func (u *User) UnmarshalString(rec string) error {
	if len(rec) == 0 || rec[0] != codecVersion {
		return errCorrupt
	}
	d := decoder{s: rec[1:]}
	u.Name = d.str()
	u.Display = d.str()
	u.Password = d.str()
	u.Created = timeOf(d.varint())
	u.Updated = timeOf(d.varint())
	u.Version = d.uvarint()
	n := d.uvarint()
	if d.bad || n > uint64(len(d.s)) {
		return errCorrupt
	}
	u.Fields = make([]Field, n)
	for i := range u.Fields {
		u.Fields[i] = Field{Label: d.str(), Value: d.str()}
	}
	if d.bad || len(d.s) != 0 {
		return errCorrupt
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// decoder reads from a string; after the first error every read returns a
// zero value and bad stays set.
type decoder struct {
	s   string
	bad bool
}

func (d *decoder) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		if c < 0x80 {
			d.s = d.s[i+1:]
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	d.bad = true
	d.s = ""
	return 0
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		d.bad = true
		d.s = ""
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}
