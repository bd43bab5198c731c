package ldap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/tohost/tohost/internal/listen"
)

// rawConn speaks LDAP at the BER level, to send what a well-behaved client
// library never would.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	r  *bufio.Reader
	id int64
}

func (h *harness) raw() *rawConn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: h.t, c: c, r: bufio.NewReader(c)}
}

// message wraps an operation in an LDAPMessage with the next message ID.
func (rc *rawConn) message(op *ber.Packet, controls ...*ber.Packet) []byte {
	rc.id++
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, rc.id, "id"))
	env.AppendChild(op)
	if len(controls) > 0 {
		c := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, ctl := range controls {
			c.AppendChild(ctl)
		}
		env.AppendChild(c)
	}
	return env.Bytes()
}

func (rc *rawConn) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) send(op *ber.Packet, controls ...*ber.Packet) {
	rc.write(rc.message(op, controls...))
}

// read returns the next response's message ID, protocolOp tag, result code
// and the whole operation.
func (rc *rawConn) read() (int64, ber.Tag, int64, *ber.Packet) {
	rc.t.Helper()
	p, err := ber.ReadPacket(rc.r)
	if err != nil {
		rc.t.Fatalf("read: %v", err)
	}
	id := p.Children[0].Value.(int64)
	op := p.Children[1]
	var code int64 = -1
	if len(op.Children) > 0 {
		code, _ = ber.ParseInt64(op.Children[0].Data.Bytes())
	}
	return id, op.Tag, code, op
}

// expectClosed reads the Notice of Disconnection with the code, then EOF.
func (rc *rawConn) expectClosed(code int64) {
	rc.t.Helper()
	id, tag, got, op := rc.read()
	if id != 0 || tag != goldap.ApplicationExtendedResponse || got != code {
		rc.t.Fatalf("want a notice of disconnection with code %d, got id %d tag %d code %d", code, id, tag, got)
	}
	if name := op.Children[len(op.Children)-1]; name.Tag != 10 || name.Data.String() != "1.3.6.1.4.1.1466.20036" {
		rc.t.Errorf("notice name %q", name.Data.String())
	}
	if _, err := rc.r.ReadByte(); !errors.Is(err, io.EOF) {
		rc.t.Fatalf("connection not closed: %v", err)
	}
}

func whoAmIOp() *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedRequest, nil, "Extended")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.4203.1.11.3", "name"))
	return op
}

// alive checks that the connection still answers.
func (rc *rawConn) alive() {
	rc.t.Helper()
	rc.send(whoAmIOp())
	if id, tag, code, _ := rc.read(); id != rc.id || tag != goldap.ApplicationExtendedResponse || code != 0 {
		rc.t.Fatalf("whoami: id %d tag %d code %d", id, tag, code)
	}
}

func bindOp(version int64, name string, auth *ber.Packet) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationBindRequest, nil, "Bind")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, version, "version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "name"))
	op.AppendChild(auth)
	return op
}

func simple(pw string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, pw, "simple")
}

func TestMalformedRequests(t *testing.T) {
	h := start(t, adminConfig())
	rc := h.raw()
	// LDAPv2 bind: protocolError, not a dropped connection.
	rc.send(bindOp(2, "", simple("")))
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationBindResponse || code != goldap.LDAPResultProtocolError {
		t.Errorf("v2 bind: tag %d code %d", tag, code)
	}
	rc.alive()
	// A search without its fields.
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchRequest, nil, "Search")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, testBase, "base"))
	rc.send(op)
	if id, tag, code, _ := rc.read(); id != rc.id || tag != goldap.ApplicationSearchResultDone || code != goldap.LDAPResultProtocolError {
		t.Errorf("short search: id %d tag %d code %d", id, tag, code)
	}
	rc.alive()
	// A compare without its assertion, a modify DN without deleteoldrdn.
	for _, tag := range []ber.Tag{goldap.ApplicationCompareRequest, goldap.ApplicationModifyDNRequest, goldap.ApplicationDelRequest + 100} {
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "op")
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, testBase, "dn"))
		if tag > 100 {
			break
		}
		rc.send(op)
		if _, got, code, _ := rc.read(); got != tag+1 || code != goldap.LDAPResultProtocolError {
			t.Errorf("request %d: response %d code %d", tag, got, code)
		}
	}
	rc.alive()
	// An unknown scope.
	bad, _ := encodeSearch(goldap.NewSearchRequest(testBase, 7, 0, 0, 0, false, "(objectClass=*)", nil, nil))
	rc.send(bad)
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationSearchResultDone || code != goldap.LDAPResultProtocolError {
		t.Errorf("scope 7: tag %d code %d", tag, code)
	}
	// A paged results control whose value is not one.
	ctl := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	ctl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "1.2.840.113556.1.4.319", "type"))
	ctl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "junk", "value"))
	sr := goldap.NewSearchRequest("", 0, 0, 0, 0, false, "(objectClass=*)", nil, nil)
	pkt, err := encodeSearch(sr)
	if err != nil {
		t.Fatal(err)
	}
	rc.send(pkt, ctl)
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationSearchResultDone || code != goldap.LDAPResultProtocolError {
		t.Errorf("bad control: tag %d code %d", tag, code)
	}
	rc.alive()
}

// encodeSearch builds a SearchRequest operation like go-ldap does.
func encodeSearch(r *goldap.SearchRequest) (*ber.Packet, error) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, r.BaseDN, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(r.Scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(r.DerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(r.SizeLimit), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(r.TimeLimit), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, r.TypesOnly, "Types Only"))
	f, err := goldap.CompileFilter(r.Filter)
	if err != nil {
		return nil, err
	}
	op.AppendChild(f)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range r.Attributes {
		attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(attrs)
	return op, nil
}

func TestUnknownOperationDisconnects(t *testing.T) {
	h := start(t, adminConfig())
	// RFC 4511 4.1.1: an unrecognised protocolOp ends the session with
	// a Notice of Disconnection.
	rc := h.raw()
	rc.send(ber.Encode(ber.ClassApplication, ber.TypeConstructed, 30, nil, "unknown"))
	rc.expectClosed(goldap.LDAPResultProtocolError)

	// So does a PDU that is not an LDAPMessage at all.
	rc = h.raw()
	rc.write([]byte("GET / HTTP/1.0\r\n\r\n"))
	rc.expectClosed(goldap.LDAPResultProtocolError)

	// And one announcing more than the size limit.
	rc = h.raw()
	rc.write([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff})
	rc.expectClosed(goldap.LDAPResultProtocolError)
}

func TestAbandonAndPipelining(t *testing.T) {
	h := start(t, options{cfg: Config{AnonymousRead: true}})
	fill(h, 3)
	rc := h.raw()
	// Abandon has no response; three requests in one write get three
	// answers in order.
	abandon := ber.NewInteger(ber.ClassApplication, ber.TypePrimitive, goldap.ApplicationAbandonRequest, int64(99), "Abandon")
	var b bytes.Buffer
	b.Write(rc.message(abandon))
	b.Write(rc.message(whoAmIOp()))
	sr, _ := encodeSearch(goldap.NewSearchRequest(testBase, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, nil))
	b.Write(rc.message(sr))
	b.Write(rc.message(whoAmIOp()))
	rc.write(b.Bytes())
	if id, tag, _, _ := rc.read(); id != 2 || tag != goldap.ApplicationExtendedResponse {
		t.Fatalf("first answer: id %d tag %d", id, tag)
	}
	for i := 0; i < 3; i++ {
		if id, tag, _, _ := rc.read(); id != 3 || tag != goldap.ApplicationSearchResultEntry {
			t.Fatalf("entry %d: id %d tag %d", i, id, tag)
		}
	}
	if id, tag, code, _ := rc.read(); id != 3 || tag != goldap.ApplicationSearchResultDone || code != 0 {
		t.Fatalf("search done: id %d tag %d code %d", id, tag, code)
	}
	if id, _, _, _ := rc.read(); id != 4 {
		t.Fatalf("last answer: id %d", id)
	}
}

func TestRawStartTLSRefused(t *testing.T) {
	h := start(t, adminConfig())
	rc := h.raw()
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationExtendedRequest, nil, "Extended")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", "name"))
	rc.send(op)
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationExtendedResponse || code != goldap.LDAPResultProtocolError {
		t.Fatalf("StartTLS without TLS: tag %d code %d", tag, code)
	}
	rc.alive()
}

// TestMaxConns: behind the daemon's connection gate, a client over the
// cap gets a Notice of Disconnection (unavailable), and the slot comes
// back when a connection ends.
func TestMaxConns(t *testing.T) {
	h := start(t, options{gate: listen.NewGate(listen.Config{MaxConns: 1, Logger: discardLog})})
	first := h.raw()
	first.alive()
	over := h.raw()
	over.expectClosed(goldap.LDAPResultUnavailable)
	first.c.Close()
	// The slot comes back when the first connection ends: the server
	// notices the close on its own time, so poll, with a hang guard only.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc := h.raw()
		rc.send(whoAmIOp())
		p, err := ber.ReadPacket(rc.r)
		if err == nil && p.Children[0].Value.(int64) == 1 {
			break
		}
		rc.c.Close()
		if time.Now().After(deadline) {
			t.Fatal("slot not released")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGracefulStop(t *testing.T) {
	h := start(t, adminConfig())
	idle := h.raw()
	idle.alive()
	h.stop() // returns once every connection is closed
	idle.expectClosed(goldap.LDAPResultUnavailable)
	if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		t.Error("still accepting")
	}
}

func TestIdleTimeout(t *testing.T) {
	gate := listen.NewGate(listen.Config{Logger: discardLog})
	h := start(t, options{cfg: Config{AnonymousRead: true, IdleTimeout: 400 * time.Millisecond}, gate: gate})
	fill(h, 1000)
	// busy is opened first and keeps sending requests until the server
	// has closed idle: by then busy has lived longer than the idle
	// timeout, and its requests must have kept it open.
	busy, idle := h.raw(), h.raw()
	busy.alive()
	closed := make(chan error, 1)
	go func() {
		_, err := idle.r.ReadByte() // until the server closes it (raw's deadline is the hang guard)
		closed <- err
	}()
	var err error
wait:
	for {
		select {
		case err = <-closed:
			break wait
		default:
			busy.alive()
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	busy.alive()

	// A client that sends searches and never reads the answers is cut
	// off too: it cannot hold the server's shutdown.
	busy.c.Close()
	stalled := h.raw()
	stalled.alive() // accepted: it holds a slot
	sr, _ := encodeSearch(goldap.NewSearchRequest(testBase, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=*)", nil, nil))
	var b bytes.Buffer
	for i := 0; i < 100; i++ {
		b.Write(stalled.message(sr))
	}
	stalled.write(b.Bytes())
	// The answers are megabytes: the server soon cannot write more, and
	// must close the connection rather than wait for the client. Once it
	// did, no connection is open.
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for gate.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a client that does not read its answers is never cut off")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop() // fails the test if the server does not stop
}

// searchWith builds a subtree search of base with a hand-made filter,
// asking for no attributes.
func searchWith(base string, filter *ber.Packet) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, goldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(goldap.ScopeWholeSubtree), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(0), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(0), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(0), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	op.AppendChild(filter)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "1.1", "Attribute"))
	op.AppendChild(attrs)
	return op
}

// substrings builds (uid=...) from its parts: tag 0 initial, 1 any, 2 final.
func substrings(parts ...*ber.Packet) *ber.Packet {
	f := ber.Encode(ber.ClassContext, ber.TypeConstructed, goldap.FilterSubstrings, nil, "Substrings")
	f.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "uid", "type"))
	s := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "parts")
	for _, p := range parts {
		s.AppendChild(p)
	}
	f.AppendChild(s)
	return f
}

func part(tag ber.Tag, v string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, tag, v, "part")
}

// RFC 4511 4.5.1.7.2: a substrings filter has at least one part, initial
// only first and final only last. Anything else is not a filter, and must
// not be evaluated as some other one.
func TestMalformedSubstrings(t *testing.T) {
	h := start(t, options{cfg: Config{AnonymousRead: true}})
	h.user("alice@example.com")
	h.user("bob@example.com")
	rc := h.raw()
	for name, f := range map[string]*ber.Packet{
		"no parts":          substrings(),
		"two initials":      substrings(part(0, "a"), part(0, "b")),
		"initial after any": substrings(part(1, "x"), part(0, "bob")),
		"any after final":   substrings(part(2, ".com"), part(1, "bob")),
		"two finals":        substrings(part(2, "x"), part(2, ".com")),
	} {
		rc.send(searchWith(testBase, f))
		entries := 0
		for {
			_, tag, code, _ := rc.read()
			if tag == goldap.ApplicationSearchResultEntry {
				entries++
				continue
			}
			if tag != goldap.ApplicationSearchResultDone || code != goldap.LDAPResultProtocolError || entries != 0 {
				t.Errorf("%s: %d entries, tag %d code %d; want protocolError", name, entries, tag, code)
			}
			break
		}
	}
	// A well-formed one still works.
	rc.send(searchWith(testBase, substrings(part(0, "b"), part(1, "@"), part(2, ".com"))))
	if _, tag, _, _ := rc.read(); tag != goldap.ApplicationSearchResultEntry {
		t.Errorf("b*@*.com: tag %d, want an entry", tag)
	}
	if _, tag, code, _ := rc.read(); tag != goldap.ApplicationSearchResultDone || code != 0 {
		t.Errorf("b*@*.com: tag %d code %d", tag, code)
	}
}
