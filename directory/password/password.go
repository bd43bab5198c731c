// Package password verifies the password hashes a mail user directory meets in
// the wild and hashes new passwords with a configured scheme.
//
// A stored value is one of:
//
//   - "{SCHEME}value" as OpenLDAP and Dovecot write it; the scheme name is
//     case-insensitive because NWAuth writes "{ssha}";
//   - a bare crypt(3) string starting with $1$, $5$, $6$, $2a$, $2b$, $2y$,
//     $argon2id$ or $argon2i$, as imported from shadow-style files;
//   - anything else, which is cleartext (NWAuth files hold those).
//
// Verify returns an error only for a stored value it cannot check (malformed,
// unsupported scheme, cost above the safety limits), never for a wrong
// password, so callers can tell "wrong password" from "broken record".
// Errors never contain the password and never the stored hash.
package password

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// Scheme names a hashing scheme that Hash can produce.
type Scheme string

// Schemes that Hash produces. Verify understands more (see HasScheme).
const (
	SchemeSSHA     Scheme = "SSHA"      // salted SHA-1, 8-byte salt, base64
	SchemeSHA      Scheme = "SHA"       // unsalted SHA-1, base64
	SchemeSSHA256  Scheme = "SSHA256"   // salted SHA-256, 8-byte salt, base64
	SchemeSSHA512  Scheme = "SSHA512"   // salted SHA-512, 8-byte salt, base64
	SchemeMD5      Scheme = "MD5"       // unsalted MD5, base64 (OpenLDAP's {MD5})
	SchemeSMD5     Scheme = "SMD5"      // salted MD5, 8-byte salt, base64
	SchemeCrypt    Scheme = "CRYPT"     // sha512-crypt ($6$, 5000 rounds)
	SchemeBlfCrypt Scheme = "BLF-CRYPT" // bcrypt, cost 10
	SchemeArgon2ID Scheme = "ARGON2ID"  // argon2id, see Argon2Params
	SchemePlain    Scheme = "PLAIN"     // cleartext
)

// MaxPasswordLen is the longest password Verify checks and Hash accepts.
// sha-crypt costs grow with the square of the password length (glibc's
// too), so a megabyte "password" sent over the wire would pin a CPU for
// minutes; no real mail password comes near this.
const MaxPasswordLen = 1024

// DefaultScheme is the scheme a directory should hash new passwords with when
// nothing is configured: the strongest one Dovecot also understands.
const DefaultScheme = SchemeArgon2ID

// schemes lists the Hash schemes in the order error messages and help show them.
var schemes = []Scheme{
	SchemeSSHA, SchemeSHA, SchemeSSHA256, SchemeSSHA512, SchemeMD5, SchemeSMD5,
	SchemeCrypt, SchemeBlfCrypt, SchemeArgon2ID, SchemePlain,
}

// schemeAliases maps other common names onto the scheme Hash produces for them.
var schemeAliases = map[string]Scheme{
	"CLEARTEXT":    SchemePlain,
	"SHA1":         SchemeSHA,
	"SHA512-CRYPT": SchemeCrypt,
	"BCRYPT":       SchemeBlfCrypt,
}

// Schemes returns the schemes Hash accepts.
func Schemes() []Scheme { return append([]Scheme(nil), schemes...) }

// Sentinel errors, for errors.Is. The returned errors wrap one of them and
// add which scheme and what is wrong.
var (
	// ErrUnsupported: the stored value uses a scheme or algorithm this
	// package cannot check, or costs more than the safety limits allow.
	ErrUnsupported = errors.New("password: unsupported scheme")
	// ErrMalformed: the stored value claims a scheme but does not fit it.
	ErrMalformed = errors.New("password: malformed stored hash")
)

func malformed(scheme, format string, args ...any) error {
	return fmt.Errorf("%w: {%s}: %s", ErrMalformed, scheme, fmt.Sprintf(format, args...))
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// ParseScheme returns the canonical Scheme for name, ignoring case. It is
// meant for configuration, so the error lists the valid names.
func ParseScheme(name string) (Scheme, error) {
	up := strings.ToUpper(strings.TrimSpace(name))
	for _, s := range schemes {
		if string(s) == up {
			return s, nil
		}
	}
	if s, ok := schemeAliases[up]; ok {
		return s, nil
	}
	valid := make([]string, len(schemes))
	for i, s := range schemes {
		valid[i] = string(s)
	}
	return "", fmt.Errorf("password: unknown scheme %q (valid: %s)", name, strings.Join(valid, ", "))
}

// HasScheme reports whether s starts with a "{NAME}" prefix that Verify
// understands, case-insensitively. A directory stores such a value as given
// instead of hashing it again.
func HasScheme(s string) bool {
	name, _, ok := splitPrefix(s)
	if !ok {
		return false
	}
	base, _, err := parseName(name)
	if err != nil {
		return false
	}
	_, ok = verifiers[base]
	return ok
}

// Verify reports whether plain matches the stored value. See the package
// comment for the forms stored may take.
// A password longer than MaxPasswordLen never matches.
func Verify(stored, plain string) (bool, error) {
	return defaultLimits.verify(stored, plain)
}

// Hash hashes plain with scheme, with the default costs, and returns
// "{SCHEME}value". The scheme name is taken case-insensitively, like
// ParseScheme. Hasher sets the costs.
func Hash(scheme Scheme, plain string) (string, error) {
	return Hasher{Scheme: scheme}.Hash(plain)
}

// limits caps the cost a stored hash may ask for. A stored value is data (it
// may come from an import file), and "$2y$31$..." or argon2 m=4194304 would
// otherwise pin a CPU for hours or exhaust memory on one login attempt.
type limits struct {
	bcryptCost     int    // highest bcrypt cost (each step doubles the work)
	shaCryptRounds int    // highest $5$/$6$ rounds
	argonMemory    uint32 // highest argon2 memory, KiB
	argonTime      uint32 // highest argon2 passes
	argonThreads   uint8  // highest argon2 parallelism
}

// defaultLimits admit every preset of libxcrypt, libsodium and Dovecot
// (libsodium's "sensitive" argon2 is 1 GiB, t=4) while keeping the worst
// case to seconds.
var defaultLimits = &limits{
	bcryptCost:     16,
	shaCryptRounds: 5_000_000,
	argonMemory:    1 << 20,
	argonTime:      16,
	argonThreads:   64,
}

// verifier checks the value after a "{NAME}" prefix. name is the canonical
// upper-case base name, for messages; enc is the .HEX/.B64 suffix, if any.
type verifier func(l *limits, name, value, plain string, enc encoding) (bool, error)

// verifiers holds every scheme name Verify understands, including the aliases
// Dovecot and OpenLDAP use. Built in init from the digest and crypt tables.
var verifiers map[string]verifier

func init() {
	verifiers = map[string]verifier{
		"PLAIN":     verifyPlainScheme,
		"CLEARTEXT": verifyPlainScheme,
		// Dovecot's {MD5} is md5-crypt, OpenLDAP's is a base64 digest; the
		// "$1$" prefix tells them apart.
		"MD5": func(l *limits, name, value, plain string, enc encoding) (bool, error) {
			if strings.HasPrefix(value, "$1$") && enc == encDefault {
				return l.verifyCrypt(name, value, plain, cryptMD5)
			}
			return verifyDigest(digests["MD5"], name, value, plain, enc)
		},
	}
	for name, d := range digests {
		if _, ok := verifiers[name]; !ok {
			verifiers[name] = digestVerifier(d)
		}
	}
	for name, kind := range cryptSchemes {
		verifiers[name] = cryptVerifier(kind)
	}
}

func (l *limits) verify(stored, plain string) (bool, error) {
	if len(plain) > MaxPasswordLen {
		return false, nil
	}
	name, value, ok := splitPrefix(stored)
	if !ok {
		if kind := bareCryptKind(stored); kind != cryptNone {
			return l.verifyCrypt("CRYPT", stored, plain, kind)
		}
		return equalConstantTime(stored, plain), nil
	}
	base, enc, err := parseName(name)
	if err != nil {
		return false, err
	}
	v, ok := verifiers[base]
	if !ok {
		return false, unsupported("{%s}", name)
	}
	return v(l, base, value, plain, enc)
}

// splitPrefix splits "{NAME}value". A brace pair that does not look like a
// scheme name (empty, too long, odd characters) is not a prefix, so a
// cleartext password such as "{my pass}" stays cleartext.
func splitPrefix(s string) (name, value string, ok bool) {
	if len(s) < 2 || s[0] != '{' {
		return "", "", false
	}
	end := strings.IndexByte(s, '}')
	if end < 2 || end > 33 {
		return "", "", false
	}
	for i := 1; i < end; i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", "", false
		}
	}
	return s[1:end], s[end+1:], true
}

// encoding is the encoding of a digest as Dovecot's ".HEX"/".B64" suffix
// names it.
type encoding int

const (
	encDefault encoding = iota // base64, or hex where the length says so
	encHex
	encBase64
)

// parseName upper-cases a scheme name and splits off an encoding suffix.
func parseName(name string) (string, encoding, error) {
	up := strings.ToUpper(name) // no allocation when already upper case
	base, suffix, found := strings.Cut(up, ".")
	if !found {
		return up, encDefault, nil
	}
	switch suffix {
	case "HEX":
		return base, encHex, nil
	case "B64", "BASE64":
		return base, encBase64, nil
	}
	return "", 0, unsupported("{%s}: unknown encoding suffix", name)
}

func verifyPlainScheme(_ *limits, name, value, plain string, enc encoding) (bool, error) {
	if enc != encDefault {
		return false, unsupported("{%s}: encoding suffix not valid for cleartext", name)
	}
	return equalConstantTime(value, plain), nil
}

// equalConstantTime compares digests of a and b so that neither the content
// nor the length of the stored secret leaks through timing.
func equalConstantTime(a, b string) bool {
	ha := sha256.Sum256([]byte(a))
	hb := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
