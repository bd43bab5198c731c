// Copyright (c) Jim Lambert
// SPDX-License-Identifier: MIT

package gldap

// fork: responses are encoded straight into the connection's write buffer.
// Upstream built a ber.Packet tree for every response (a bytes.Buffer and a
// description string per node, re-encoded recursively by Bytes), which cost
// more CPU than the directory lookup it answered.

// BER identifiers used in responses.
const (
	berInteger    = 0x02
	berOctet      = 0x04
	berEnumerated = 0x0a
	berSequence   = 0x30
	berSet        = 0x31
	berAppCons    = 0x60 // | application tag, constructed
	berCtxPrim    = 0x80 // | context tag, primitive
	berCtxCons    = 0xa0 // | context tag, constructed
)

// appender is a response that can encode itself without a ber.Packet.
type appender interface {
	appendTo(b []byte) []byte
}

func lengthSize(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffff:
		return 4
	}
	return 5
}

// tlvSize is the encoded size of a value with n content bytes.
func tlvSize(n int) int { return 1 + lengthSize(n) + n }

func appendHeader(b []byte, id byte, n int) []byte {
	b = append(b, id)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0x81, byte(n))
	case n <= 0xffff:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendString(b []byte, id byte, s string) []byte {
	return append(appendHeader(b, id, len(s)), s...)
}

// intSize is the number of content bytes of v in two's complement.
func intSize(v int64) int {
	n := 1
	for v > 127 || v < -128 {
		n++
		v >>= 8
	}
	return n
}

func appendInt(b []byte, id byte, v int64) []byte {
	n := intSize(v)
	b = appendHeader(b, id, n)
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendMessage wraps an operation of opLen content bytes, written by op, in
// an LDAPMessage with the given controls.
func appendMessage(b []byte, id int64, opID byte, opLen int, controls []Control, op func([]byte) []byte) []byte {
	var ctl []byte
	if len(controls) > 0 {
		ctl = encodeControls(controls).Bytes()
	}
	b = appendHeader(b, berSequence, tlvSize(intSize(id))+tlvSize(opLen)+len(ctl))
	b = appendInt(b, berInteger, id)
	b = appendHeader(b, opID, opLen)
	b = op(b)
	return append(b, ctl...)
}

// resultSize and appendResult encode the LDAPResult fields.
func (l *baseResponse) resultSize() int {
	return tlvSize(intSize(int64(l.code))) + tlvSize(len(l.matchedDN)) + tlvSize(len(l.diagMessage))
}

func (l *baseResponse) appendResult(b []byte) []byte {
	b = appendInt(b, berEnumerated, int64(l.code))
	b = appendString(b, berOctet, l.matchedDN)
	return appendString(b, berOctet, l.diagMessage)
}

func (r *GeneralResponse) appendTo(b []byte) []byte {
	return appendMessage(b, r.messageID, berAppCons|byte(r.applicationCode), r.resultSize(), nil, r.appendResult)
}

func (r *BindResponse) appendTo(b []byte) []byte {
	return appendMessage(b, r.messageID, berAppCons|ApplicationBindResponse, r.resultSize(), r.controls, r.appendResult)
}

func (r *SearchResponseDone) appendTo(b []byte) []byte {
	return appendMessage(b, r.messageID, berAppCons|ApplicationSearchResultDone, r.resultSize(), r.controls, r.appendResult)
}

func (r *ExtendedResponse) appendTo(b []byte) []byte {
	n := r.resultSize()
	if r.name != "" {
		n += tlvSize(len(r.name))
	}
	if r.hasValue {
		n += tlvSize(len(r.value))
	}
	return appendMessage(b, r.messageID, berAppCons|ApplicationExtendedResponse, n, nil, func(b []byte) []byte {
		b = r.appendResult(b)
		if r.name != "" {
			b = appendString(b, berCtxPrim|10, string(r.name))
		}
		if r.hasValue {
			b = appendString(b, berCtxPrim|11, r.value)
		}
		return b
	})
}

func (r *SearchResponseEntry) appendTo(b []byte) []byte {
	attrs := 0
	for _, a := range r.entry.Attributes {
		attrs += tlvSize(a.contentSize())
	}
	n := tlvSize(len(r.entry.DN)) + tlvSize(attrs)
	return appendMessage(b, r.messageID, berAppCons|ApplicationSearchResultEntry, n, nil, func(b []byte) []byte {
		b = appendString(b, berOctet, r.entry.DN)
		b = appendHeader(b, berSequence, attrs)
		for _, a := range r.entry.Attributes {
			b = a.appendTo(b)
		}
		return b
	})
}

func (e *EntryAttribute) valuesSize() int {
	n := 0
	for _, v := range e.Values {
		n += tlvSize(len(v))
	}
	return n
}

func (e *EntryAttribute) contentSize() int {
	return tlvSize(len(e.Name)) + tlvSize(e.valuesSize())
}

func (e *EntryAttribute) appendTo(b []byte) []byte {
	b = appendHeader(b, berSequence, e.contentSize())
	b = appendString(b, berOctet, e.Name)
	b = appendHeader(b, berSet, e.valuesSize())
	for _, v := range e.Values {
		b = appendString(b, berOctet, v)
	}
	return b
}

// AddAttributeValues adds an attribute to the entry without the copies
// NewEntryAttribute makes (ByteValues stays nil).
func (r *SearchResponseEntry) AddAttributeValues(name string, values []string) {
	r.entry.Attributes = append(r.entry.Attributes, &EntryAttribute{Name: name, Values: values})
}
