package password

import (
	"fmt"
	"strconv"
	"strings"
)

// Hasher hashes new passwords with one scheme and its costs. It is a value:
// each user of it (a directory, an import) holds its own, so configuring
// the costs touches no state shared by the process.
type Hasher struct {
	Scheme Scheme       // default DefaultScheme
	Argon2 Argon2Params // for SchemeArgon2ID; zero fields take the defaults
}

// Validate reports a scheme Hash does not produce or argon2 costs it
// cannot use.
func (h Hasher) Validate() error {
	if _, err := ParseScheme(string(h.scheme())); err != nil {
		return err
	}
	return h.Argon2.Validate()
}

func (h Hasher) scheme() Scheme {
	if h.Scheme == "" {
		return DefaultScheme
	}
	return h.Scheme
}

// Hash hashes plain and returns "{SCHEME}value".
func (h Hasher) Hash(plain string) (string, error) {
	s, err := ParseScheme(string(h.scheme()))
	if err != nil {
		return "", err
	}
	if len(plain) > MaxPasswordLen {
		return "", fmt.Errorf("password: longer than %d bytes", MaxPasswordLen)
	}
	var value string
	switch s {
	case SchemePlain:
		value = plain
	case SchemeCrypt:
		value, err = hashShaCrypt(plain)
	case SchemeBlfCrypt:
		value, err = hashBcrypt(plain)
	case SchemeArgon2ID:
		p := h.Argon2.withDefaults()
		if err = p.Validate(); err == nil {
			value, err = hashArgon2ID(plain, p)
		}
	default:
		value, err = hashDigest(digests[string(s)], plain)
	}
	if err != nil {
		return "", fmt.Errorf("password: hash {%s}: %w", s, err)
	}
	return "{" + string(s) + "}" + value, nil
}

// Slow reports whether Hash costs milliseconds of a core rather than
// microseconds: what a caller must not run unbounded.
func (h Hasher) Slow() bool {
	s, err := ParseScheme(string(h.scheme()))
	return err == nil && (s == SchemeCrypt || s == SchemeBlfCrypt || s == SchemeArgon2ID)
}

// NeedsRehash reports whether stored is weaker than what Hash writes: a
// weaker family of scheme (cleartext < digest < salted digest < DES and
// md5-crypt < sha-crypt < bcrypt < argon2i < argon2id), or the same
// family at a lower cost (argon2 memory or passes, sha-crypt rounds,
// bcrypt cost, digest size). A stronger hash is never weakened, and a
// value it cannot read is left alone.
func (h Hasher) NeedsRehash(stored string) bool {
	have, ok := strengthOf(stored)
	if !ok {
		return false
	}
	want := h.strength()
	if have.rank != want.rank {
		return have.rank < want.rank
	}
	return have.cost[0] < want.cost[0] || have.cost[1] < want.cost[1]
}

// IsSlow reports whether verifying against stored costs milliseconds
// (sha-crypt, md5-crypt, bcrypt, argon2) rather than microseconds
// (digests, cleartext, DES crypt): what a caller must not run unbounded.
func IsSlow(stored string) bool {
	s, ok := strengthOf(stored)
	return ok && s.slow
}

// strength places a hash among the others: rank orders the families, cost
// the parameters within one (higher is stronger).
type strength struct {
	rank int
	cost [2]uint64
	slow bool
}

// Ranks of the scheme families, weakest first.
const (
	rankClear = iota
	rankDigest
	rankSaltedDigest
	rankOldCrypt // DES, md5-crypt, apr1
	rankShaCrypt
	rankBcrypt
	rankArgon2I
	rankArgon2ID
)

// strength is what Hash writes.
func (h Hasher) strength() strength {
	s, _ := ParseScheme(string(h.scheme()))
	switch s {
	case SchemePlain:
		return strength{rank: rankClear}
	case SchemeCrypt:
		return strength{rank: rankShaCrypt, cost: [2]uint64{shaCryptDefaultRounds}, slow: true}
	case SchemeBlfCrypt:
		return strength{rank: rankBcrypt, cost: [2]uint64{bcryptCost}, slow: true}
	case SchemeArgon2ID:
		p := h.Argon2.withDefaults()
		return strength{rank: rankArgon2ID, cost: [2]uint64{uint64(p.Memory), uint64(p.Time)}, slow: true}
	}
	return digestStrength(digests[string(s)])
}

// shaCryptDefaultRounds is what "$5$"/"$6$" without rounds= means.
const shaCryptDefaultRounds = 5000

func digestStrength(d digest) strength {
	if d.salted {
		return strength{rank: rankSaltedDigest, cost: [2]uint64{uint64(d.size)}}
	}
	return strength{rank: rankDigest, cost: [2]uint64{uint64(d.size)}}
}

// strengthOf reads the scheme and costs of a stored value; false for one
// Verify would refuse.
func strengthOf(stored string) (strength, bool) {
	name, value, ok := splitPrefix(stored)
	if !ok {
		if bareCryptKind(stored) == cryptNone {
			return strength{rank: rankClear}, true
		}
		return cryptStrength("CRYPT", stored)
	}
	base, _, err := parseName(name)
	if err != nil {
		return strength{}, false
	}
	switch {
	case base == "PLAIN" || base == "CLEARTEXT":
		return strength{rank: rankClear}, true
	case base == "MD5" && strings.HasPrefix(value, "$1$"):
		return cryptStrength(base, value)
	case cryptSchemes[base] != cryptNone:
		return cryptStrength(base, value)
	}
	d, ok := digests[base]
	if !ok {
		return strength{}, false
	}
	return digestStrength(d), true
}

func cryptStrength(name, value string) (strength, bool) {
	kind, err := detectCrypt(name, value)
	if err != nil {
		return strength{}, false
	}
	switch kind {
	case cryptDES:
		return strength{rank: rankOldCrypt}, true
	case cryptMD5, cryptAPR1:
		return strength{rank: rankOldCrypt, slow: true}, true
	case cryptSHA256, cryptSHA512:
		return strength{rank: rankShaCrypt, cost: [2]uint64{shaCryptRounds(value)}, slow: true}, true
	case cryptBcrypt:
		cost, err := strconv.Atoi(value[4:min(6, len(value))])
		if err != nil {
			return strength{}, false
		}
		return strength{rank: rankBcrypt, cost: [2]uint64{uint64(cost)}, slow: true}, true
	}
	p, err := parseArgon2(value)
	if err != nil {
		return strength{}, false
	}
	rank := rankArgon2ID
	if kind == cryptArgon2I {
		rank = rankArgon2I
	}
	return strength{rank: rank, cost: [2]uint64{uint64(p.memory), uint64(p.time)}, slow: true}, true
}

// shaCryptRounds reads "$6$rounds=N$..."; without it, the default.
func shaCryptRounds(value string) uint64 {
	_, rest, _ := strings.Cut(value[1:], "$")
	n, ok := strings.CutPrefix(rest, "rounds=")
	if !ok {
		return shaCryptDefaultRounds
	}
	n, _, _ = strings.Cut(n, "$")
	r, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return 0
	}
	return r
}
