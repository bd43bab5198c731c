package password

import "testing"

func TestCostClass(t *testing.T) {
	for stored, want := range map[string]string{
		"{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w==": "{SSHA}",
		"{ssha}tVANQoXYZ":  "{SSHA}",
		"{SHA256.HEX}abcd": "{SHA256}",
		"{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g":        "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1",
		"{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g":        "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1",
		"{BLF-CRYPT}$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234": "{BLF-CRYPT}$2y$10",
		"{CRYPT}$6$rounds=5000$salt$hash":                                         "{CRYPT}$6$rounds=5000",
		"{CRYPT}$6$salt$hash":                                                     "{CRYPT}$6",
		"{CRYPT}$6$12$hash":                                                       "{CRYPT}$6$12", // a 2-digit salt reads as a cost: rare, harmless
		"$1$salt$hash":                                                            "{CRYPT}$1",
		"letmein":                                                                 "PLAIN",
		"{PLAIN}letmein":                                                          "{PLAIN}",
	} {
		if got := CostClass(stored); got != want {
			t.Errorf("CostClass(%q) = %q, want %q", stored, got, want)
		}
	}
}
