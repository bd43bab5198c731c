// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

// fork: requests are decoded from the message bytes read by readMessage,
// with the same ber.Packet result as ber.DecodePacketErr but without its
// cost: asn1-ber reads every primitive through io.ReadAll (a 512-byte
// buffer each) and copies every constructed value into a bytes.Buffer,
// about 14 KB of garbage for one search request, which made the garbage
// collector the main cost of a lookup. Here Data slices the message, which
// is allocated per request and never reused, so the packets may outlive
// the next read.

import (
	"bytes"
	"errors"
	"fmt"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// maxDepth bounds nesting (filters nest); asn1-ber's default is 256 too.
const maxDepth = 256

var errTruncated = errors.New("ber: truncated")

// decodeMessage decodes one BER element that must fill b exactly.
func decodeMessage(b []byte) (*ber.Packet, error) {
	p, n, err := decodeBER(b, 0)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("ber: %d bytes after the message", len(b)-n)
	}
	return p, nil
}

func decodeBER(b []byte, depth int) (*ber.Packet, int, error) {
	if depth > maxDepth {
		return nil, 0, fmt.Errorf("ber: nesting deeper than %d", maxDepth)
	}
	if len(b) < 2 {
		return nil, 0, errTruncated
	}
	id := b[0]
	if id&0x1f == 0x1f {
		return nil, 0, errors.New("ber: multi-byte tags are not used by LDAP")
	}
	length, hl := int(b[1]), 2
	if length&0x80 != 0 {
		n := length & 0x7f
		if n == 0 {
			return nil, 0, errors.New("ber: indefinite length is not allowed in LDAP")
		}
		if n > 4 || len(b) < 2+n {
			return nil, 0, errTruncated
		}
		length = 0
		for _, c := range b[2 : 2+n] {
			length = length<<8 | int(c)
		}
		hl += n
	}
	if length > len(b)-hl {
		return nil, 0, errTruncated
	}
	content := b[hl : hl+length : hl+length]
	p := &ber.Packet{
		Identifier: ber.Identifier{
			ClassType: ber.Class(id & 0xc0),
			TagType:   ber.Type(id & 0x20),
			Tag:       ber.Tag(id & 0x1f),
		},
		Data: bytes.NewBuffer(content),
	}
	if p.TagType == ber.TypeConstructed {
		for rest := content; len(rest) > 0; {
			c, n, err := decodeBER(rest, depth+1)
			if err != nil {
				return nil, 0, err
			}
			p.Children = append(p.Children, c)
			rest = rest[n:]
		}
		return p, hl + length, nil
	}
	if p.ClassType == ber.ClassUniversal {
		p.ByteValue = content
		switch p.Tag {
		case ber.TagBoolean:
			v, _ := ber.ParseInt64(content)
			p.Value = v != 0
		case ber.TagInteger, ber.TagEnumerated:
			p.Value, _ = ber.ParseInt64(content)
		case ber.TagOctetString:
			p.Value = string(content)
		}
	}
	return p, hl + length, nil
}
