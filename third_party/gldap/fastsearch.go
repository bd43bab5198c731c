// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

// fork: the search request, the hot path of a directory, is read straight
// from the message bytes into a SearchMessage; only its filter becomes a
// ber.Packet tree. Decoding the whole request into packets (about 15 of
// them, with a bytes.Buffer each) was most of the garbage a lookup made.
// Anything unexpected falls back to the general decoder, which also
// produces the error answers.

import (
	"errors"

	ber "github.com/go-asn1-ber/asn1-ber"
)

var errNotSimple = errors.New("not a simple search request")

// tlv splits the next element off b: its identifier, its content and what
// follows it. Lengths are definite (LDAP allows nothing else).
func tlv(b []byte) (id byte, content, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errTruncated
	}
	id, n, hl := b[0], int(b[1]), 2
	if id&0x1f == 0x1f {
		return 0, nil, nil, errNotSimple
	}
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, nil, nil, errTruncated
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hl += k
	}
	if n > len(b)-hl {
		return 0, nil, nil, errTruncated
	}
	return id, b[hl : hl+n : hl+n], b[hl+n:], nil
}

func tlvInt(b []byte, want byte) (int64, []byte, error) {
	id, c, rest, err := tlv(b)
	if err != nil || id != want || len(c) == 0 || len(c) > 8 {
		return 0, nil, errNotSimple
	}
	v, err := ber.ParseInt64(c)
	return v, rest, err
}

// parseSearch decodes msg when it is a SearchRequest; ok is false for any
// other message, or anything this reader does not handle.
func parseSearch(msg []byte) (_ *SearchMessage, ok bool) {
	env, body, rest, err := tlv(msg)
	if err != nil || env != berSequence || len(rest) != 0 {
		return nil, false
	}
	id, body, err := tlvInt(body, 0x02)
	if err != nil {
		return nil, false
	}
	opID, op, controls, err := tlv(body)
	if err != nil || opID != berAppCons|ApplicationSearchRequest {
		return nil, false
	}
	m := &SearchMessage{baseMessage: baseMessage{id: id}}
	if len(controls) > 0 {
		cid, _, after, err := tlv(controls)
		if err != nil || cid != berCtxCons || len(after) != 0 {
			return nil, false
		}
		p, err := decodeMessage(controls)
		if err != nil {
			return nil, false
		}
		for _, c := range p.Children {
			ctl, err := decodeControl(c)
			if err != nil {
				return nil, false
			}
			m.Controls = append(m.Controls, ctl)
		}
	}
	var c []byte
	var typ byte
	if typ, c, op, err = tlv(op); err != nil || typ != berOctet {
		return nil, false
	}
	m.BaseDN = string(c)
	var v int64
	if v, op, err = tlvInt(op, berEnumerated); err != nil {
		return nil, false
	}
	m.Scope = Scope(v)
	if v, op, err = tlvInt(op, berEnumerated); err != nil {
		return nil, false
	}
	m.DerefAliases = int(v)
	if m.SizeLimit, op, err = tlvInt(op, berInteger); err != nil {
		return nil, false
	}
	if m.TimeLimit, op, err = tlvInt(op, berInteger); err != nil {
		return nil, false
	}
	if typ, c, op, err = tlv(op); err != nil || typ != 0x01 || len(c) != 1 {
		return nil, false
	}
	m.TypesOnly = c[0] != 0
	filterEnd := op
	if _, _, op, err = tlv(op); err != nil {
		return nil, false
	}
	if m.FilterPacket, err = decodeMessage(filterEnd[:len(filterEnd)-len(op)]); err != nil {
		return nil, false
	}
	if m.Filter, err = decompileFilter(m.FilterPacket); err != nil {
		return nil, false
	}
	if typ, c, op, err = tlv(op); err != nil || typ != berSequence || len(op) != 0 {
		return nil, false
	}
	if m.Attributes, ok = parseAttributes(c); !ok {
		return nil, false
	}
	return m, true
}

// parseAttributes reads the attribute list c. The names are slices of one
// string copied from c: one allocation, not one per name, and a slice of
// the right size, not grown by appending. A list of 100,000 names was
// otherwise most of what such a request cost.
func parseAttributes(c []byte) ([]string, bool) {
	n := 0
	for rest := c; len(rest) > 0; n++ {
		typ, _, next, err := tlv(rest)
		if err != nil || typ != berOctet {
			return nil, false
		}
		rest = next
	}
	all := string(c)
	out := make([]string, 0, n)
	for rest := c; len(rest) > 0; {
		_, a, next, _ := tlv(rest)
		end := len(c) - len(next)
		out = append(out, all[end-len(a):end])
		rest = next
	}
	return out, true
}
