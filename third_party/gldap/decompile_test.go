// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

import (
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/require"
)

// fork: decompileFilter answers what ldap.DecompileFilter does, in linear
// time.
func TestDecompileFilterAsUpstream(t *testing.T) {
	for _, f := range []string{
		"(uid=a)", "(&(uid=a*)(|(cn=x)(!(quota>=1))))", "(mail=*@x*)", "(objectClass=*)",
		"(uid:=b)", "(cn:dn:2.5.13.5:=Jo)", "(|(uid=a)(mail=b))", "(&)", "(|)", "(quota<=5)",
		"(cn~=x)", "(cn=a\\2ab\\29)", "(!(!(!(&(a=b)(c=*d*e*)))))",
	} {
		p, err := ldap.CompileFilter(f)
		require.NoError(t, err, f)
		p, err = decodeMessage(p.Bytes()) // as read off the wire
		require.NoError(t, err, f)
		require.NoError(t, decodeDNAttributes(p, 0))
		want, wantErr := ldap.DecompileFilter(p)
		got, err := decompileFilter(p)
		require.Equal(t, wantErr, err, f)
		require.Equal(t, want, got, f)
	}
	// A NOT of nothing is an error, as upstream's.
	not := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterNot, nil, "")
	_, err := decompileFilter(not)
	require.Error(t, err)
}

func BenchmarkDecompileDeep(b *testing.B) {
	f := "(uid=" + strings.Repeat("x", 100_000) + ")"
	for range 120 {
		f = "(!" + f + ")"
	}
	p, err := ldap.CompileFilter(f)
	require.NoError(b, err)
	p, err = decodeMessage(p.Bytes())
	require.NoError(b, err)
	for b.Loop() {
		if _, err := decompileFilter(p); err != nil {
			b.Fatal(err)
		}
	}
}
