// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

// This file holds what the tohost fork adds to gldap: the Compare,
// ModifyDN and Abandon requests, protocolError answers to malformed
// requests, the Notice of Disconnection, and per-connection state for
// handlers. See README.fork.md.

import (
	"fmt"
	"net"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// NoticeOfDisconnectionOID names the unsolicited notification a server sends
// before it closes a connection (RFC 4511 4.4.1).
const NoticeOfDisconnectionOID = "1.3.6.1.4.1.1466.20036"

const (
	compareRouteOperation  routeOperation = "compare"
	modifyDNRouteOperation routeOperation = "modifyDN"
	abandonRouteOperation  routeOperation = "abandon"
)

// CompareMessage is a compare request message (RFC 4511 4.10).
type CompareMessage struct {
	baseMessage
	// DN is the entry to compare against.
	DN string
	// AttributeDesc and AssertionValue are the attribute value assertion.
	AttributeDesc  string
	AssertionValue string
	Controls       []Control
}

// ModifyDNMessage is a modify DN request message (RFC 4511 4.9).
type ModifyDNMessage struct {
	baseMessage
	DN           string
	NewRDN       string
	DeleteOldRDN bool
	// NewSuperior is "" when the request keeps the entry's parent.
	NewSuperior string
	Controls    []Control
}

// AbandonMessage is an abandon request message (RFC 4511 4.11).
type AbandonMessage struct {
	baseMessage
	// AbandonID is the message ID of the operation to abandon.
	AbandonID int64
}

func (p *packet) compareMessage(msgID int64) (*CompareMessage, error) {
	const op = "gldap.(packet).compareMessage"
	rp, err := p.requestPacket()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := rp.assert(ber.ClassUniversal, ber.TypePrimitive, withTag(ber.TagOctetString), withAssertChild(0)); err != nil {
		return nil, fmt.Errorf("%s: entry: %w", op, ErrInvalidParameter)
	}
	if err := rp.assert(ber.ClassUniversal, ber.TypeConstructed, withTag(ber.TagSequence), withAssertChild(1)); err != nil {
		return nil, fmt.Errorf("%s: ava: %w", op, ErrInvalidParameter)
	}
	ava := &packet{Packet: rp.Children[1]}
	for i := 0; i < 2; i++ {
		if err := ava.assert(ber.ClassUniversal, ber.TypePrimitive, withTag(ber.TagOctetString), withAssertChild(i)); err != nil {
			return nil, fmt.Errorf("%s: ava: %w", op, ErrInvalidParameter)
		}
	}
	controls, err := p.controls()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &CompareMessage{
		baseMessage:    baseMessage{id: msgID},
		DN:             rp.Children[0].Data.String(),
		AttributeDesc:  ava.Children[0].Data.String(),
		AssertionValue: ava.Children[1].Data.String(),
		Controls:       controls,
	}, nil
}

func (p *packet) modifyDNMessage(msgID int64) (*ModifyDNMessage, error) {
	const op = "gldap.(packet).modifyDNMessage"
	rp, err := p.requestPacket()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for i := 0; i < 2; i++ {
		if err := rp.assert(ber.ClassUniversal, ber.TypePrimitive, withTag(ber.TagOctetString), withAssertChild(i)); err != nil {
			return nil, fmt.Errorf("%s: entry/newrdn: %w", op, ErrInvalidParameter)
		}
	}
	if err := rp.assert(ber.ClassUniversal, ber.TypePrimitive, withTag(ber.TagBoolean), withAssertChild(2)); err != nil {
		return nil, fmt.Errorf("%s: deleteoldrdn: %w", op, ErrInvalidParameter)
	}
	m := &ModifyDNMessage{
		baseMessage: baseMessage{id: msgID},
		DN:          rp.Children[0].Data.String(),
		NewRDN:      rp.Children[1].Data.String(),
	}
	m.DeleteOldRDN, _ = rp.Children[2].Value.(bool)
	if len(rp.Children) > 3 {
		sup := rp.Children[3]
		if sup.ClassType != ber.ClassContext || sup.Tag != 0 {
			return nil, fmt.Errorf("%s: newSuperior: %w", op, ErrInvalidParameter)
		}
		m.NewSuperior = sup.Data.String()
	}
	if m.Controls, err = p.controls(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return m, nil
}

func (p *packet) abandonMessage(msgID int64) (*AbandonMessage, error) {
	rp, err := p.requestPacket()
	if err != nil {
		return nil, fmt.Errorf("gldap.(packet).abandonMessage: %w", err)
	}
	id, err := ber.ParseInt64(rp.Data.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gldap.(packet).abandonMessage: %w", err)
	}
	return &AbandonMessage{baseMessage: baseMessage{id: msgID}, AbandonID: id}, nil
}

// requestError is a request that could not be decoded. resp, when set,
// answers it (protocolError in the response type of the request), and the
// connection goes on.
type requestError struct {
	err  error
	resp Response
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// responseTags maps request application tags to their response tags.
var responseTags = map[ber.Tag]int{
	ApplicationBindRequest:     ApplicationBindResponse,
	ApplicationSearchRequest:   ApplicationSearchResultDone,
	ApplicationModifyRequest:   ApplicationModifyResponse,
	ApplicationAddRequest:      ApplicationAddResponse,
	ApplicationDelRequest:      ApplicationDelResponse,
	ApplicationModifyDNRequest: ApplicationModifyDNResponse,
	ApplicationCompareRequest:  ApplicationCompareResponse,
	ApplicationExtendedRequest: ApplicationExtendedResponse,
}

// malformed explains a request whose operation and message ID are known but
// whose content is not valid, so that it can be answered with protocolError
// (RFC 4511 4.1.1 allows the answer instead of a disconnection for a
// message whose envelope is sound).
func malformed(p *packet, err error) error {
	id, idErr := p.requestMessageID()
	if idErr != nil || len(p.Children) < 2 || p.Children[1].ClassType != ber.ClassApplication {
		return err
	}
	tag, ok := responseTags[p.Children[1].Tag]
	if !ok {
		return err
	}
	return &requestError{err: err, resp: &GeneralResponse{
		baseResponse: &baseResponse{
			messageID:   id,
			code:        ResultProtocolError,
			diagMessage: "malformed request",
		},
		applicationCode: tag,
	}}
}

// NewNoticeOfDisconnection returns the unsolicited notification (message
// ID 0) that tells a client why the server closes the connection.
func NewNoticeOfDisconnection(code int, msg string) *ExtendedResponse {
	return &ExtendedResponse{
		baseResponse: &baseResponse{code: int16(code), diagMessage: msg},
		name:         NoticeOfDisconnectionOID,
	}
}

// GetCompareMessage retrieves the CompareMessage from the request.
func (r *Request) GetCompareMessage() (*CompareMessage, error) {
	m, ok := r.message.(*CompareMessage)
	if !ok {
		return nil, fmt.Errorf("gldap.(Request).GetCompareMessage: %T not a compare request: %w", r.message, ErrInvalidParameter)
	}
	return m, nil
}

// GetModifyDNMessage retrieves the ModifyDNMessage from the request.
func (r *Request) GetModifyDNMessage() (*ModifyDNMessage, error) {
	m, ok := r.message.(*ModifyDNMessage)
	if !ok {
		return nil, fmt.Errorf("gldap.(Request).GetModifyDNMessage: %T not a modify DN request: %w", r.message, ErrInvalidParameter)
	}
	return m, nil
}

// GetExtendedOperationMessage retrieves the ExtendedOperationMessage.
func (r *Request) GetExtendedOperationMessage() (*ExtendedOperationMessage, error) {
	m, ok := r.message.(*ExtendedOperationMessage)
	if !ok {
		return nil, fmt.Errorf("gldap.(Request).GetExtendedOperationMessage: %T not an extended request: %w", r.message, ErrInvalidParameter)
	}
	return m, nil
}

// ExtendedName is the requestName of an extended request ("" otherwise).
func (r *Request) ExtendedName() ExtendedOperationName { return r.extendedName }

// MessageID is the LDAP message ID of the request.
func (r *Request) MessageID() int64 { return r.message.GetID() }

// ConnValue returns the value the application stored for the request's
// connection with SetConnValue (nil at first). Handlers keep per-connection
// state there, such as who bound, without a map keyed by ConnectionID.
func (r *Request) ConnValue() any {
	r.conn.valueMu.Lock()
	defer r.conn.valueMu.Unlock()
	return r.conn.value
}

// SetConnValue stores v for the request's connection.
func (r *Request) SetConnValue(v any) {
	r.conn.valueMu.Lock()
	defer r.conn.valueMu.Unlock()
	r.conn.value = v
}

// RemoteAddr is the client's address.
func (r *Request) RemoteAddr() net.Addr { return r.conn.raw.RemoteAddr() }

// IsTLS reports whether the connection is encrypted (LDAPS or StartTLS).
func (r *Request) IsTLS() bool {
	r.conn.valueMu.Lock()
	defer r.conn.valueMu.Unlock()
	return r.conn.isTLS
}

// NewCompareResponse creates the response to a compare request; its result
// code is ResultCompareTrue, ResultCompareFalse or an error.
func (r *Request) NewCompareResponse(code int, msg string) *GeneralResponse {
	return r.newResult(ApplicationCompareResponse, code, msg)
}

// NewResult creates the response of the given application tag (e.g.
// ApplicationModifyDNResponse) with a result code and diagnostic message;
// unlike NewResponse it leaves matchedDN empty.
func (r *Request) NewResult(applicationCode, code int, msg string) *GeneralResponse {
	return r.newResult(applicationCode, code, msg)
}

func (r *Request) newResult(applicationCode, code int, msg string) *GeneralResponse {
	return &GeneralResponse{
		baseResponse:    &baseResponse{messageID: r.message.GetID(), code: int16(code), diagMessage: msg},
		applicationCode: applicationCode,
	}
}

// Compare registers a handler for compare requests.
func (m *Mux) Compare(fn HandlerFunc, opt ...Option) error {
	return m.addTypedRoute(fn, compareRouteOperation, opt...)
}

// ModifyDN registers a handler for modify DN requests.
func (m *Mux) ModifyDN(fn HandlerFunc, opt ...Option) error {
	return m.addTypedRoute(fn, modifyDNRouteOperation, opt...)
}

func (m *Mux) addTypedRoute(fn HandlerFunc, op routeOperation, opt ...Option) error {
	if fn == nil {
		return fmt.Errorf("gldap.(Mux).%s: missing HandlerFunc: %w", op, ErrInvalidParameter)
	}
	opts := getRouteOpts(opt...)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.routes = append(m.routes, &typedRoute{baseRoute: &baseRoute{h: fn, routeOp: op, label: opts.withLabel}})
	return nil
}

// typedRoute matches every request of its operation.
type typedRoute struct{ *baseRoute }

func (r *typedRoute) match(req *Request) bool { return req != nil && req.routeOp == r.routeOp }

// decompileFilter is ldap.DecompileFilter for a filter read off the wire.
// asn1-ber leaves the value of a context-specific element undecoded, and
// DecompileFilter reads an extensible match's dnAttributes flag as a
// bool, so every (attr:dn:=value) filter failed as a malformed request.
func decompileFilter(p *ber.Packet) (string, error) {
	if err := decodeDNAttributes(p, 0); err != nil {
		return "", err
	}
	var b strings.Builder
	if err := decompileTo(&b, p); err != nil {
		return "", err
	}
	return b.String(), nil
}

// decompileTo writes what ldap.DecompileFilter returns for p, in time
// linear in its size. DecompileFilter returns each nested filter as a
// string that its parent copies, so a filter nested d deep costs d times
// its size: 140 ms for 1 MB nested 120 deep, spent on any search request
// before the server looks at who sent it. Here &, | and ! write into one
// buffer, and only the leaves go through DecompileFilter.
func decompileTo(b *strings.Builder, p *ber.Packet) error {
	var op byte
	switch p.Tag {
	case ldap.FilterAnd:
		op = '&'
	case ldap.FilterOr:
		op = '|'
	case ldap.FilterNot:
		if len(p.Children) == 0 {
			_, err := ldap.DecompileFilter(p) // its error for a NOT of nothing
			return err
		}
		op = '!'
	default:
		s, err := ldap.DecompileFilter(p)
		b.WriteString(s)
		return err
	}
	b.WriteByte('(')
	b.WriteByte(op)
	kids := p.Children
	if op == '!' {
		kids = kids[:1] // DecompileFilter reads the first only
	}
	for _, c := range kids {
		if err := decompileTo(b, c); err != nil {
			return err
		}
	}
	b.WriteByte(')')
	return nil
}

// decodeDNAttributes sets the value of every dnAttributes flag in the
// filter p. depth bounds the recursion, as DecompileFilter's own does not.
func decodeDNAttributes(p *ber.Packet, depth int) error {
	if depth > 256 { // BER levels: a filter level is one or two of them
		return fmt.Errorf("filter nested too deep: %w", ErrInvalidParameter)
	}
	if p.ClassType == ber.ClassContext && p.Tag == ldap.FilterExtensibleMatch {
		for _, c := range p.Children {
			if c.Tag != ldap.MatchingRuleAssertionDNAttributes || c.Value != nil {
				continue
			}
			b := c.Data.Bytes()
			if len(b) != 1 {
				return fmt.Errorf("dnAttributes is not a boolean: %w", ErrInvalidParameter)
			}
			c.Value = b[0] != 0
		}
		return nil
	}
	for _, c := range p.Children {
		if err := decodeDNAttributes(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}
