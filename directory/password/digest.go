package password

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"io"
	"strings"
)

// digest is a plain or salted message-digest scheme as OpenLDAP and Dovecot
// store it: encode(H(password || salt) || salt).
type digest struct {
	newHash func() hash.Hash
	size    int
	salted  bool
}

// saltSize is the salt length Hash uses for salted digests. OpenLDAP and
// Dovecot use 4 bytes; 8 costs nothing and makes precomputation harder.
const saltSize = 8

// digests maps scheme names, including Dovecot's and OpenLDAP's aliases, onto
// their digest. "MD5" is here for OpenLDAP's meaning; Verify also accepts
// Dovecot's md5-crypt meaning of {MD5} (see the verifiers table).
var digests = map[string]digest{
	"SHA":       {sha1.New, sha1.Size, false},
	"SHA1":      {sha1.New, sha1.Size, false},
	"SSHA":      {sha1.New, sha1.Size, true},
	"SHA256":    {sha256.New, sha256.Size, false},
	"SSHA256":   {sha256.New, sha256.Size, true},
	"SHA384":    {sha512.New384, sha512.Size384, false},
	"SSHA384":   {sha512.New384, sha512.Size384, true},
	"SHA512":    {sha512.New, sha512.Size, false},
	"SSHA512":   {sha512.New, sha512.Size, true},
	"MD5":       {md5.New, md5.Size, false},
	"PLAIN-MD5": {md5.New, md5.Size, false},
	"LDAP-MD5":  {md5.New, md5.Size, false},
	"SMD5":      {md5.New, md5.Size, true},
}

func digestVerifier(d digest) verifier {
	return func(_ *limits, name, value, plain string, enc encoding) (bool, error) {
		return verifyDigest(d, name, value, plain, enc)
	}
}

func verifyDigest(d digest, name, value, plain string, enc encoding) (bool, error) {
	raw, err := decodeDigest(d, value, enc)
	if err != nil {
		return false, malformed(name, "%v", err)
	}
	switch {
	case !d.salted && len(raw) != d.size:
		return false, malformed(name, "digest is %d bytes, want %d", len(raw), d.size)
	case d.salted && len(raw) <= d.size:
		return false, malformed(name, "value is %d bytes, want a %d-byte digest and a salt", len(raw), d.size)
	}
	sum := d.sum(plain, raw[d.size:])
	return subtle.ConstantTimeCompare(sum, raw[:d.size]) == 1, nil
}

// decodeDigest undoes the text encoding. Like Dovecot, it takes an unsalted
// value whose length is exactly twice the digest size as hex: base64 of a
// digest never has that length, and PLAIN-MD5 is usually written in hex.
func decodeDigest(d digest, value string, enc encoding) ([]byte, error) {
	if enc == encHex || enc == encDefault && !d.salted && len(value) == 2*d.size {
		raw, err := hex.DecodeString(value)
		if err != nil {
			return nil, errBadHex
		}
		return raw, nil
	}
	// Padding is optional: some tools strip it.
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(value, "="))
	if err != nil {
		return nil, errBadBase64
	}
	return raw, nil
}

// Fixed messages: the decoders' own errors quote offsets into the stored
// value, which is no business of a log line.
var (
	errBadHex    = errorString("bad hex encoding")
	errBadBase64 = errorString("bad base64 encoding")
)

type errorString string

func (e errorString) Error() string { return string(e) }

func (d digest) sum(plain string, salt []byte) []byte {
	h := d.newHash()
	io.WriteString(h, plain)
	h.Write(salt)
	return h.Sum(make([]byte, 0, sha512.Size))
}

func hashDigest(d digest, plain string) (string, error) {
	var salt []byte
	if d.salted {
		salt = make([]byte, saltSize)
		if _, err := rand.Read(salt); err != nil {
			return "", err
		}
	}
	raw := append(d.sum(plain, salt), salt...)
	return base64.StdEncoding.EncodeToString(raw), nil
}
