// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/require"
)

// fork: tests of Request.Context (cancel.go).

// blockingServer serves searches with handle on an inline server with an
// idle timeout, and stops it when the test ends.
func blockingServer(t *testing.T, handle HandlerFunc) (*Server, string) {
	t.Helper()
	s, err := NewServer(WithInlineRequests(), WithIdleTimeout(time.Minute))
	require.NoError(t, err)
	mux, err := NewMux()
	require.NoError(t, err)
	require.NoError(t, mux.DefaultRoute(handle))
	require.NoError(t, s.Router(mux))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go s.Serve(ln)
	t.Cleanup(func() { s.Stop() })
	return s, ln.Addr().String()
}

func searchRequest(id int64) []byte {
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "id"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ApplicationSearchRequest, nil, "search")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "dc=x", "base"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 2, "scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "deref"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "size"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "time"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "types"))
	f, _ := ldap.CompileFilter("(uid=*)")
	op.AppendChild(f)
	op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attrs"))
	env.AppendChild(op)
	return env.Bytes()
}

// causes runs searches whose handler signals started, waits for its
// context (or, when release is not nil, for release) and reports each
// context's cause.
func causes(t *testing.T, release chan struct{}) (s *Server, addr string, started chan struct{}, out chan error) {
	started, out = make(chan struct{}, 4), make(chan error, 4)
	s, addr = blockingServer(t, func(w *ResponseWriter, r *Request) {
		ctx := r.Context()
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		out <- context.Cause(ctx)
		_ = w.Write(r.NewSearchDoneResponse(WithResponseCode(ResultSuccess)))
	})
	return s, addr, started, out
}

func dialWrite(t *testing.T, addr string, b []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write(b)
	require.NoError(t, err)
	return c
}

func TestContextClientGone(t *testing.T) {
	_, addr, started, out := causes(t, nil)
	c := dialWrite(t, addr, searchRequest(1))
	<-started
	// A request pipelined behind the running one does not end the
	// watch; the close after it does.
	_, err := c.Write(searchRequest(2))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-out, ErrClientGone)
}

func TestContextServerStopping(t *testing.T) {
	s, addr, started, out := causes(t, nil)
	c := dialWrite(t, addr, searchRequest(1))
	<-started
	go s.Stop()
	require.ErrorIs(t, <-out, ErrServerStopping)
	// The client still gets its answer, then the notice of disconnection.
	r := bufio.NewReader(c)
	for _, want := range []ber.Tag{ApplicationSearchResultDone, ApplicationExtendedResponse} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, err := ber.ReadPacket(r)
		require.NoError(t, err)
		require.Equal(t, want, p.Children[1].Tag)
	}
}

// TestContextKeepsRequests: the request sent while another one ran is
// served after it.
func TestContextKeepsRequests(t *testing.T) {
	release := make(chan struct{})
	_, addr, _, out := causes(t, release)
	c := dialWrite(t, addr, searchRequest(1))
	_, err := c.Write(searchRequest(2))
	require.NoError(t, err)
	// The answers go out together: the first waits in the buffer while
	// the second request, already read, is served.
	for range 2 {
		release <- struct{}{}
		require.NoError(t, <-out)
	}
	r := bufio.NewReader(c)
	for id := int64(1); id <= 2; id++ {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, err := ber.ReadPacket(r)
		require.NoError(t, err)
		require.Equal(t, id, p.Children[0].Value)
	}
}
