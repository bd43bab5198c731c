package password

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"

	gcrypt "github.com/GehirnInc/crypt"
	"github.com/GehirnInc/crypt/apr1_crypt"
	"github.com/GehirnInc/crypt/md5_crypt"
	"github.com/GehirnInc/crypt/sha256_crypt"
	"github.com/GehirnInc/crypt/sha512_crypt"
	"golang.org/x/crypto/bcrypt"
)

// cryptKind is a crypt(3) algorithm, told by the prefix of the string.
type cryptKind int

const (
	cryptNone cryptKind = iota
	cryptAny            // whichever the prefix names ({CRYPT})
	cryptDES
	cryptMD5
	cryptAPR1
	cryptSHA256
	cryptSHA512
	cryptBcrypt
	cryptArgon2ID
	cryptArgon2I
)

var cryptKindNames = [...]string{
	cryptNone:     "none",
	cryptAny:      "crypt",
	cryptDES:      "traditional DES crypt",
	cryptMD5:      "md5-crypt ($1$)",
	cryptAPR1:     "apr1 md5-crypt ($apr1$)",
	cryptSHA256:   "sha256-crypt ($5$)",
	cryptSHA512:   "sha512-crypt ($6$)",
	cryptBcrypt:   "bcrypt ($2a$/$2b$/$2y$)",
	cryptArgon2ID: "argon2id ($argon2id$)",
	cryptArgon2I:  "argon2i ($argon2i$)",
}

func (k cryptKind) String() string { return cryptKindNames[k] }

// cryptSchemes maps the "{NAME}" schemes whose value is a crypt(3) string
// onto the algorithm the value must use. Dovecot writes {BLF-CRYPT},
// {SHA512-CRYPT}, {ARGON2ID} and friends; OpenLDAP writes {CRYPT}.
var cryptSchemes = map[string]cryptKind{
	"CRYPT":        cryptAny,
	"DES-CRYPT":    cryptDES,
	"MD5-CRYPT":    cryptMD5,
	"SHA256-CRYPT": cryptSHA256,
	"SHA512-CRYPT": cryptSHA512,
	"BLF-CRYPT":    cryptBcrypt,
	"ARGON2ID":     cryptArgon2ID,
	"ARGON2I":      cryptArgon2I,
}

// cryptPrefixes are the supported "$id$" prefixes. Longer ones come first
// where one prefix starts another.
var cryptPrefixes = []struct {
	prefix string
	kind   cryptKind
}{
	{"$1$", cryptMD5},
	{"$apr1$", cryptAPR1},
	{"$5$", cryptSHA256},
	{"$6$", cryptSHA512},
	{"$2a$", cryptBcrypt},
	{"$2b$", cryptBcrypt},
	{"$2y$", cryptBcrypt},
	{"$argon2id$", cryptArgon2ID},
	{"$argon2i$", cryptArgon2I},
}

// unsupportedCrypt are algorithms met in shadow files that have no
// maintained Go implementation here; naming them beats "malformed".
var unsupportedCrypt = []struct{ prefix, name string }{
	{"$y$", "yescrypt"},
	{"$gy$", "gost-yescrypt"},
	{"$7$", "scrypt"},
	{"$2x$", "bcrypt $2x$ (buggy crypt_blowfish)"},
	{"$argon2d$", "argon2d"},
	{"$sha1$", "sha1-crypt"},
	{"$md5$", "SunMD5"},
	{"$md5,", "SunMD5"},
	{"$3$", "NT-hash"},
}

// bareCryptKind tells whether a value without "{NAME}" prefix is a crypt
// string rather than cleartext. Only "$id$" forms count: a 13-character DES
// string cannot be told from a cleartext password. Unsupported algorithms
// count too, so that Verify reports them instead of taking a hash for the
// password.
func bareCryptKind(s string) cryptKind {
	if len(s) < 3 || s[0] != '$' {
		return cryptNone
	}
	for _, p := range cryptPrefixes {
		if strings.HasPrefix(s, p.prefix) {
			return cryptAny
		}
	}
	for _, p := range unsupportedCrypt {
		if strings.HasPrefix(s, p.prefix) {
			return cryptAny
		}
	}
	return cryptNone
}

// detectCrypt names the algorithm of a crypt string.
func detectCrypt(name, value string) (cryptKind, error) {
	for _, p := range cryptPrefixes {
		if strings.HasPrefix(value, p.prefix) {
			return p.kind, nil
		}
	}
	for _, p := range unsupportedCrypt {
		if strings.HasPrefix(value, p.prefix) {
			return cryptNone, unsupported("{%s}: crypt algorithm %s", name, p.name)
		}
	}
	switch {
	case strings.HasPrefix(value, "_"):
		return cryptNone, unsupported("{%s}: crypt algorithm BSDi extended DES", name)
	case len(value) == desLen && value[0] != '$':
		return cryptDES, nil
	case value == "":
		return cryptNone, malformed(name, "empty crypt string")
	}
	return cryptNone, malformed(name, "not a known crypt(3) format")
}

func cryptVerifier(want cryptKind) verifier {
	return func(l *limits, name, value, plain string, enc encoding) (bool, error) {
		if enc != encDefault {
			return false, unsupported("{%s}: encoding suffix not valid for crypt schemes", name)
		}
		return l.verifyCrypt(name, value, plain, want)
	}
}

// verifyCrypt checks a crypt(3) string. want restricts the algorithm, so
// that {BLF-CRYPT} holding "$1$..." is reported rather than accepted.
func (l *limits) verifyCrypt(name, value, plain string, want cryptKind) (bool, error) {
	kind, err := detectCrypt(name, value)
	if err != nil {
		return false, err
	}
	if want != cryptAny && kind != want {
		return false, malformed(name, "value is not %s", want)
	}
	switch kind {
	case cryptDES:
		return verifyDES(name, value, plain)
	case cryptBcrypt:
		return l.verifyBcrypt(name, value, plain)
	case cryptArgon2ID, cryptArgon2I:
		return l.verifyArgon2(name, value, plain, kind)
	default:
		return l.verifyShaCrypt(name, value, plain, kind)
	}
}

// shaCrypts describes the algorithms implemented by GehirnInc/crypt:
// "$id$[rounds=N$]salt$hash" with hash in crypt's base64.
var shaCrypts = map[cryptKind]struct {
	prefix  string
	sumLen  int
	rounds  bool // takes a "rounds=N$" parameter
	crypter func() gcrypt.Crypter
}{
	cryptMD5:    {"$1$", 22, false, md5_crypt.New},
	cryptAPR1:   {"$apr1$", 22, false, apr1_crypt.New},
	cryptSHA256: {"$5$", 43, true, sha256_crypt.New},
	cryptSHA512: {"$6$", 86, true, sha512_crypt.New},
}

func (l *limits) verifyShaCrypt(name, value, plain string, kind cryptKind) (bool, error) {
	c := shaCrypts[kind]
	i := strings.LastIndexByte(value, '$')
	if i < len(c.prefix) {
		return false, malformed(name, "%s: missing salt", kind)
	}
	setting, sum := value[:i], value[i+1:]
	if len(sum) != c.sumLen || !isCrypt64(sum) {
		return false, malformed(name, "%s: hash part is not %d characters of [./0-9A-Za-z]", kind, c.sumLen)
	}
	salt := setting[len(c.prefix):]
	if rest, ok := strings.CutPrefix(salt, "rounds="); ok && c.rounds {
		n, s, found := strings.Cut(rest, "$")
		rounds, err := strconv.Atoi(n)
		if !found || err != nil || rounds < 0 {
			return false, malformed(name, "%s: bad rounds parameter", kind)
		}
		if rounds > l.shaCryptRounds {
			return false, unsupported("{%s}: %s rounds %d above limit %d", name, kind, rounds, l.shaCryptRounds)
		}
		salt = s
	}
	if strings.IndexByte(salt, '$') >= 0 {
		return false, malformed(name, "%s: salt contains '$'", kind)
	}
	// Hand the library only the setting: it mis-splits a full string whose
	// salt is shorter than 16 characters when rounds= is present.
	got, err := c.crypter().Generate([]byte(plain), []byte(setting))
	if err != nil {
		return false, malformed(name, "%s: %v", kind, err)
	}
	// Compare only the hash parts: crypt(3) truncates overlong salts and
	// clamps rounds, so the regenerated setting may legitimately differ.
	gotSum := got[strings.LastIndexByte(got, '$')+1:]
	return subtle.ConstantTimeCompare([]byte(gotSum), []byte(sum)) == 1, nil
}

// bcryptLen is the length of "$2y$NN$" + 22 salt + 31 hash characters.
const bcryptLen = 60

func (l *limits) verifyBcrypt(name, value, plain string) (bool, error) {
	// Check the shape here: x/crypto/bcrypt ignores trailing garbage and
	// accepts odd versions, and its errors are not meant for operators.
	if len(value) != bcryptLen || value[6] != '$' || !isCrypt64(value[7:]) {
		return false, malformed(name, "bcrypt: want $2y$NN$ and 53 characters of [./0-9A-Za-z]")
	}
	cost, err := strconv.Atoi(value[4:6])
	if err != nil || cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return false, malformed(name, "bcrypt: bad cost %q", value[4:6])
	}
	if cost > l.bcryptCost {
		return false, unsupported("{%s}: bcrypt cost %d above limit %d", name, cost, l.bcryptCost)
	}
	// Passwords over 72 bytes: Go's bcrypt, like crypt_blowfish, uses the
	// first 72 bytes, so hashes made elsewhere still verify.
	err = bcrypt.CompareHashAndPassword([]byte(value), []byte(plain))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	return false, malformed(name, "bcrypt: %v", err)
}

// bcryptCost is the cost Hash uses: about 50 ms on a current core, the
// default of x/crypto, Dovecot and PHP.
const bcryptCost = 10

func hashBcrypt(plain string) (string, error) {
	// GenerateFromPassword refuses more than 72 bytes instead of silently
	// ignoring the rest; pass that on rather than truncate.
	h, err := bcrypt.GenerateFromPassword([]byte(plain), bcryptCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// shaCryptSaltLen is the longest salt sha-crypt uses (16 characters, 96 bits).
const shaCryptSaltLen = 16

// hashShaCrypt makes "$6$salt$hash" with the default 5000 rounds, as
// glibc's crypt(3) and Dovecot's SHA512-CRYPT do.
func hashShaCrypt(plain string) (string, error) {
	salt, err := randomCrypt64(shaCryptSaltLen)
	if err != nil {
		return "", err
	}
	return sha512_crypt.New().Generate([]byte(plain), []byte("$6$"+salt))
}

// crypt64 is the alphabet of crypt(3) salts and hashes.
const crypt64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// crypt64Index returns the 6-bit value of c, or -1 outside the alphabet.
func crypt64Index(c byte) int {
	switch {
	case c == '.' || c == '/':
		return int(c - '.')
	case '0' <= c && c <= '9':
		return int(c-'0') + 2
	case 'A' <= c && c <= 'Z':
		return int(c-'A') + 12
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 38
	}
	return -1
}

func isCrypt64(s string) bool {
	for i := 0; i < len(s); i++ {
		if crypt64Index(s[i]) < 0 {
			return false
		}
	}
	return true
}

func randomCrypt64(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = crypt64[b[i]&63] // 256 is a multiple of 64: uniform
	}
	return string(b), nil
}
