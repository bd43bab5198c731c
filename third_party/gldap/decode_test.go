// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

import (
	"bytes"
	"fmt"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// fork: decodeMessage must agree with ber.DecodePacketErr on every input
// both accept, and never panic.
func FuzzDecodeMessage(f *testing.F) {
	for _, p := range []*packet{
		testSearchRequestPacket(&testing.T{}, SearchMessage{baseMessage: baseMessage{id: 3}, BaseDN: "dc=x", Filter: "(&(uid=a*b)(!(cn=x))(mail=*))", Attributes: []string{"cn", "+"}}),
		testSimpleBindRequestPacket(&testing.T{}, SimpleBindMessage{baseMessage: baseMessage{id: 1}, UserName: "uid=a", Password: "p"}),
		testModifyRequestPacket(&testing.T{}, ModifyMessage{baseMessage: baseMessage{id: 2}, DN: "uid=a", Changes: []Change{{Operation: ReplaceAttribute, Modification: PartialAttribute{Type: "cn", Vals: []string{"a", "b"}}}}}),
	} {
		f.Add(p.Bytes())
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeMessage(b)
		if err != nil {
			return
		}
		want, err := ber.DecodePacketErr(b)
		if err != nil {
			// asn1-ber is stricter about some string types
			// (UTF8, IA5, printable) that LDAP does not use.
			return
		}
		if err := sameTree(got, want); err != nil {
			t.Fatalf("%v\n got %x\nwant %x", err, got.Bytes(), want.Bytes())
		}
		p := &packet{Packet: got}
		if _, err := p.requestMessageID(); err == nil {
			_, _ = newMessage(p)
		}
	})
}

// sameTree compares decoded packets. Data of constructed packets is not
// compared: asn1-ber rebuilds it from the children, normalizing length
// encodings, where decodeMessage keeps the bytes received.
func sameTree(a, b *ber.Packet) error {
	if a.Identifier != b.Identifier || len(a.Children) != len(b.Children) {
		return fmt.Errorf("packet %v/%d children, want %v/%d", a.Identifier, len(a.Children), b.Identifier, len(b.Children))
	}
	if a.TagType == ber.TypePrimitive {
		if !bytes.Equal(a.Data.Bytes(), b.Data.Bytes()) {
			return fmt.Errorf("data %x, want %x", a.Data.Bytes(), b.Data.Bytes())
		}
		if a.Value != nil && b.Value != nil && a.Value != b.Value {
			return fmt.Errorf("value %v, want %v", a.Value, b.Value)
		}
	}
	for i := range a.Children {
		if err := sameTree(a.Children[i], b.Children[i]); err != nil {
			return err
		}
	}
	return nil
}

// The search filter of a decoded request reads back as go-ldap writes it.
func TestDecodeMessageFilter(t *testing.T) {
	const filter = "(&(uid=a*b*c)(|(cn>=x)(!(mail=*)))(quota<=5))"
	p := testSearchRequestPacket(t, SearchMessage{baseMessage: baseMessage{id: 3}, BaseDN: "dc=x", Filter: filter})
	got, err := decodeMessage(p.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMessage(&packet{Packet: got})
	if err != nil {
		t.Fatal(err)
	}
	s := m.(*SearchMessage)
	if s.Filter != filter {
		t.Errorf("filter %q", s.Filter)
	}
	if f, _ := ldap.DecompileFilter(s.FilterPacket); f != filter {
		t.Errorf("filter packet %q", f)
	}
}

// fork: parseSearch, the fast path for search requests, must agree with the
// general decoder on every request it accepts.
func FuzzParseSearch(f *testing.F) {
	t := &testing.T{}
	for _, m := range []SearchMessage{
		{baseMessage: baseMessage{id: 3}, BaseDN: "dc=x", Scope: 2, SizeLimit: 10, TimeLimit: 300, Filter: "(uid=a)", Attributes: []string{"mail", "cn"}},
		{baseMessage: baseMessage{id: 70000}, BaseDN: "", TypesOnly: true, Filter: "(&(uid=a*b)(!(cn=x))(mail=*))", Attributes: []string{}},
		{baseMessage: baseMessage{id: 5}, BaseDN: "ou=users,dc=x", Filter: "(objectClass=*)", Attributes: []string{"1.1"},
			Controls: []Control{testControlPaging(t, 100), testControlString(t, "1.2.3", WithCriticality(true))}},
	} {
		f.Add(testSearchRequestPacket(t, m).Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseSearch(b)
		if !ok {
			return
		}
		p, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("parseSearch accepted what decodeMessage refuses: %v", err)
		}
		m, err := newMessage(&packet{Packet: p})
		if err != nil {
			t.Fatalf("parseSearch accepted what newMessage refuses: %v", err)
		}
		slow := m.(*SearchMessage)
		if err := sameTree(fast.FilterPacket, slow.FilterPacket); err != nil {
			t.Fatalf("filter packet: %v", err)
		}
		fast.FilterPacket, slow.FilterPacket = nil, nil
		if len(fast.Controls) != len(slow.Controls) {
			t.Fatalf("controls %v, want %v", fast.Controls, slow.Controls)
		}
		for i := range fast.Controls {
			if fast.Controls[i].String() != slow.Controls[i].String() {
				t.Fatalf("control %v, want %v", fast.Controls[i], slow.Controls[i])
			}
		}
		fast.Controls, slow.Controls = nil, nil
		if fmt.Sprintf("%#v", fast) != fmt.Sprintf("%#v", slow) {
			t.Fatalf("fast %#v\nslow %#v", fast, slow)
		}
	})
}

// fork: a filter with dnAttributes, read off the wire, decompiles (asn1-ber
// leaves the flag's value undecoded, which DecompileFilter could not read).
func TestDecompileFilterDNAttributes(t *testing.T) {
	for _, f := range []string{"(ou:dn:=users)", "(&(uid=a)(!(dc:dn:2.5.13.2:=x)))", "(cn:=x)"} {
		compiled, err := ldap.CompileFilter(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodeMessage(compiled.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		got, err := decompileFilter(p)
		if err != nil || got != f {
			t.Errorf("%s: got %q, %v", f, got, err)
		}
	}
	// A dnAttributes flag that is not one byte is refused, not guessed.
	bad := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterExtensibleMatch, nil, "")
	bad.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, ldap.MatchingRuleAssertionType, "ou", ""))
	bad.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, ldap.MatchingRuleAssertionMatchValue, "users", ""))
	bad.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, ldap.MatchingRuleAssertionDNAttributes, "\x01\x01", ""))
	p, err := decodeMessage(bad.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decompileFilter(p); err == nil {
		t.Errorf("two-byte dnAttributes: got %q", got)
	}
}
