package bench

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"strconv"
)

// The deterministic user population. User i is userNNNNNNN@domainDD.example
// (i zero-padded to 7 digits, DD = i mod Domains), with password
// pw-NNNNNNN stored as {SSHA} under a salt derived from i, a tohost of
// backend1..backend4.example, a quota of 100 MiB, 500 MiB, 1 GiB or 5 GiB
// and a "First Last" name. Every attribute of user i is a pure function of
// i: a load generator picks a random index and knows the exact expected
// answer without reading any file, and files written from the population
// (scripts/bench-users.sh writes it as CSV) match what it expects. The
// golden values in users_test.go pin it; changing them invalidates
// generated data and every directory loaded from it.
//
// The Append* forms build the same strings into a caller's buffer without
// allocating; the load generator calls them once per request.

const (
	// Domains is the number of mail domains users are spread over.
	Domains = 100
	// Backends is the number of distinct tohost values (backend1..backendN.example).
	Backends = 4
	// BaseDN is the LDAP suffix; users live under ou=users.
	BaseDN = "dc=example,dc=com"
	// UsersDN is the parent entry of all user entries.
	UsersDN = "ou=users," + BaseDN
)

var (
	firstNames = []string{"Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
		"Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil",
		"Trent", "Uma", "Victor", "Walter", "Xena", "Yusuf", "Zoe", "Quentin"}
	lastNames = []string{"Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson",
		"Davies", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White",
		"Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke", "Martin", "Lopez"}
	// quotas in bytes: 100 MiB, 500 MiB, 1 GiB, 5 GiB.
	quotas = []int64{100 << 20, 500 << 20, 1 << 30, 5 << 30}
)

// mix is splitmix64: a cheap, well-distributed deterministic hash of i and a
// per-attribute stream number, so attributes are not correlated with each
// other or with the domain (i % Domains).
func mix(i uint64, stream uint64) uint64 {
	z := i*0x9E3779B97F4A7C15 + stream*0xD1B54A32D192ED03 + 0x632BE59BD9B4E019
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// appendPadded appends n in decimal, zero-padded to at least width
// characters, exactly as fmt's %0<width>d does (a sign counts in the width).
func appendPadded(dst []byte, n int, width int) []byte {
	u := uint64(n)
	if n < 0 {
		dst = append(dst, '-')
		width--
		u = -u // two's complement magnitude, correct for math.MinInt too
	}
	digits := 1
	for v := u; v >= 10; v /= 10 {
		digits++
	}
	for ; digits < width; digits++ {
		dst = append(dst, '0')
	}
	return strconv.AppendUint(dst, u, 10)
}

// AppendLogin appends Login(i) to dst.
func AppendLogin(dst []byte, i int) []byte { return appendLogin(dst, "user", i) }

// AppendMissLogin appends MissLogin(i) to dst.
func AppendMissLogin(dst []byte, i int) []byte { return appendLogin(dst, "nouser", i) }

func appendLogin(dst []byte, prefix string, i int) []byte {
	dst = append(dst, prefix...)
	dst = appendPadded(dst, i, 7)
	dst = append(dst, "@domain"...)
	dst = appendPadded(dst, i%Domains, 2)
	return append(dst, ".example"...)
}

// Login returns the mail login of user i: userNNNNNNN@domainDD.example.
func Login(i int) string { return string(AppendLogin(make([]byte, 0, 32), i)) }

// MissLogin returns a login that exists in no generated population:
// nouserNNNNNNN@domainDD.example.
func MissLogin(i int) string { return string(AppendMissLogin(make([]byte, 0, 32), i)) }

// AppendPassword appends Password(i) to dst.
func AppendPassword(dst []byte, i int) []byte {
	return appendPadded(append(dst, "pw-"...), i, 7)
}

// Password returns the clear-text password of user i: pw-NNNNNNN.
func Password(i int) string { return string(AppendPassword(make([]byte, 0, 16), i)) }

// DN returns the LDAP DN of user i. The uid value is the full login; '@' and
// '.' need no escaping in a DN.
func DN(i int) string { return "uid=" + Login(i) + "," + UsersDN }

// backendNames are ToHost's possible values, built once.
var backendNames = func() [Backends]string {
	var b [Backends]string
	for k := range b {
		b[k] = "backend" + strconv.Itoa(k+1) + ".example"
	}
	return b
}()

// ToHost returns the backend host of user i (backend1..backend4.example).
func ToHost(i int) string { return backendNames[mix(uint64(i), 1)%Backends] }

// Quota returns the mailbox quota of user i in bytes.
func Quota(i int) int64 { return quotas[mix(uint64(i), 2)%uint64(len(quotas))] }

// Name returns the full name of user i ("First Last"; no commas or quotes).
func Name(i int) string {
	h := mix(uint64(i), 3)
	return firstNames[h%uint64(len(firstNames))] + " " + lastNames[(h>>32)%uint64(len(lastNames))]
}

// Salt returns the deterministic 8-byte SSHA salt of user i.
func Salt(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], mix(uint64(i), 4))
	return b[:]
}

// SSHA returns the OpenLDAP userPassword form "{SSHA}" + base64(sha1(pw+salt) + salt).
func SSHA(pw string, salt []byte) string {
	h := sha1.New()
	h.Write([]byte(pw))
	h.Write(salt)
	sum := h.Sum(nil)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(sum, salt...))
}

// PasswordHash returns the {SSHA} hash of user i's password.
func PasswordHash(i int) string { return SSHA(Password(i), Salt(i)) }

// CheckSSHA reports whether pw matches an "{SSHA}..." hash (any salt length).
func CheckSSHA(hash, pw string) bool {
	const pfx = "{SSHA}"
	if len(hash) < len(pfx) || hash[:len(pfx)] != pfx {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(hash[len(pfx):])
	if err != nil || len(raw) < sha1.Size {
		return false
	}
	return SSHA(pw, raw[sha1.Size:]) == hash
}
