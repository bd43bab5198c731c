package authent

// FoldName lower-cases the ASCII letters of a user name and keeps every other
// byte as written, as Dovecot and Postfix fold names. Unicode case mapping
// is not applied: it folds distinct names together (the Kelvin sign K and
// "k", dotted and dotless i), differs between Unicode versions and between
// Go and PostgreSQL, and would let one user be reached under names an
// admin never gave it. The directory keys users by it (docs/protocol.md,
// "User names"); the backend names their Maildirs by it.
func FoldName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}
