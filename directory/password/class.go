package password

import "strings"

// CostClass names what verifying against stored costs: its scheme and its
// cost parameters, without salt or hash. Two hashes of one class take the
// same time to verify, whatever the password: "{SSHA}",
// "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1", "{BLF-CRYPT}$2y$10",
// "{CRYPT}$6$rounds=5000"; "PLAIN" for cleartext.
func CostClass(stored string) string {
	name, value, ok := splitPrefix(stored)
	switch {
	case ok:
		base, _, err := parseName(name)
		if err != nil {
			base = strings.ToUpper(name)
		}
		name = "{" + base + "}"
	case bareCryptKind(stored) != cryptNone:
		name, value = "{CRYPT}", stored
	default:
		return "PLAIN"
	}
	if !strings.HasPrefix(value, "$") {
		return name // a digest: its cost is the scheme's
	}
	// A crypt string: $id$ then parameters ("v=19", "m=65536,t=2,p=1",
	// "rounds=5000", a bcrypt cost "10"), then salt and hash.
	segs := strings.Split(value[1:], "$")
	n := 1
	for n < len(segs)-1 && isParam(segs[n]) {
		n++
	}
	return name + "$" + strings.Join(segs[:n], "$")
}

// isParam tells a crypt parameter segment from a salt.
func isParam(seg string) bool {
	if strings.Contains(seg, "=") {
		return true
	}
	if seg == "" || len(seg) > 2 {
		return false
	}
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return false
		}
	}
	return true
}
