package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Default argon2id parameters: RFC 9106's second recommendation as OWASP
// sizes it for a login path (m=19 MiB, t=2, p=1; 16-byte salt, 32-byte
// hash). One hash costs about 40 ms of one core and 19 MiB, so a core
// verifies some 25 new passwords a second. libsodium's "interactive"
// preset (64 MiB, what Dovecot writes) costs three times that: a storm of
// first logins would queue for seconds. Hashes stored with other
// parameters verify with their own, which the PHC string holds.
const (
	DefaultArgon2Memory  = 19 * 1024 // KiB
	DefaultArgon2Time    = 2
	DefaultArgon2Threads = 1
	argon2SaltLen        = 16
	argon2KeyLen         = 32
)

// Argon2Params are the costs of new argon2id hashes. A zero field takes
// its default.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over the memory
	Threads uint8  // lanes, each computed by a goroutine of its own
}

// withDefaults fills the zero fields.
func (p Argon2Params) withDefaults() Argon2Params {
	if p.Memory == 0 {
		p.Memory = DefaultArgon2Memory
	}
	if p.Time == 0 {
		p.Time = DefaultArgon2Time
	}
	if p.Threads == 0 {
		p.Threads = DefaultArgon2Threads
	}
	return p
}

// Validate refuses parameters that argon2 cannot use or that Verify would
// refuse to check (its safety limits): a hash nobody can log in with.
func (p Argon2Params) Validate() error {
	p = p.withDefaults()
	l := defaultLimits
	switch {
	case p.Memory < 8*uint32(p.Threads):
		return fmt.Errorf("password: argon2 memory %d KiB below 8 KiB per thread", p.Memory)
	case p.Memory > l.argonMemory:
		return fmt.Errorf("password: argon2 memory %d KiB above the limit of %d", p.Memory, l.argonMemory)
	case p.Time > l.argonTime:
		return fmt.Errorf("password: argon2 time %d above the limit of %d", p.Time, l.argonTime)
	case p.Threads > l.argonThreads:
		return fmt.Errorf("password: argon2 threads %d above the limit of %d", p.Threads, l.argonThreads)
	}
	return nil
}

// argon2Params is the decoded PHC string
// "$argon2id$v=19$m=65536,t=2,p=1$salt$hash".
type argon2Params struct {
	memory, time uint32
	threads      uint8
	salt, sum    []byte
}

func (l *limits) verifyArgon2(name, value, plain string, kind cryptKind) (bool, error) {
	p, err := parseArgon2(value)
	if err != nil {
		return false, malformed(name, "%s: %v", kind, err)
	}
	if p.memory > l.argonMemory || p.time > l.argonTime || p.threads > l.argonThreads {
		return false, unsupported("{%s}: %s m=%d,t=%d,p=%d above limit m=%d,t=%d,p=%d", name, kind,
			p.memory, p.time, p.threads, l.argonMemory, l.argonTime, l.argonThreads)
	}
	got := argon2Key(kind, []byte(plain), p.salt, p.time, p.memory, p.threads, uint32(len(p.sum)))
	return subtle.ConstantTimeCompare(got, p.sum) == 1, nil
}

func argon2Key(kind cryptKind, plain, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	if kind == cryptArgon2I {
		return argon2.Key(plain, salt, time, memory, threads, keyLen)
	}
	return argon2.IDKey(plain, salt, time, memory, threads, keyLen)
}

// parseArgon2 decodes a PHC string and checks it against the limits of the
// reference implementation (x/crypto/argon2 panics on some of them).
func parseArgon2(value string) (argon2Params, error) {
	var p argon2Params
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	f := strings.Split(value, "$")
	if len(f) != 6 || f[0] != "" {
		return p, errorString("want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	if f[2] != "v=19" {
		// v=16 (and no v= at all) is Argon2 1.0, which x/crypto lacks.
		return p, errorString("only version v=19 is supported")
	}
	var seen [3]bool
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, fmt.Errorf("bad parameter %q", k)
		}
		switch k {
		case "m":
			p.memory, seen[0] = uint32(n), true
		case "t":
			p.time, seen[1] = uint32(n), true
		case "p":
			if n > 255 {
				return p, errorString("parallelism above 255")
			}
			p.threads, seen[2] = uint8(n), true
		default:
			return p, fmt.Errorf("unknown parameter %q", k)
		}
	}
	switch {
	case !seen[0] || !seen[1] || !seen[2]:
		return p, errorString("m, t and p are all required")
	case p.time < 1 || p.threads < 1:
		return p, errorString("t and p must be at least 1")
	case p.memory < 8*uint32(p.threads):
		return p, errorString("m must be at least 8*p")
	}
	var err error
	if p.salt, err = decodePHC(f[4]); err != nil || len(p.salt) < 8 {
		return p, errorString("salt must be base64 of at least 8 bytes")
	}
	if p.sum, err = decodePHC(f[5]); err != nil || len(p.sum) < 4 || len(p.sum) > 1024 {
		return p, errorString("hash must be base64 of 4 to 1024 bytes")
	}
	return p, nil
}

// decodePHC decodes PHC base64: standard alphabet, padding omitted (some
// writers keep it, so it is tolerated).
func decodePHC(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

func hashArgon2ID(plain string, p Argon2Params) (string, error) {
	salt := make([]byte, argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := argon2Key(cryptArgon2ID, []byte(plain), salt, p.Time, p.Memory, p.Threads, argon2KeyLen)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}
