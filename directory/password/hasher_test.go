package password

import (
	"strings"
	"testing"
)

// TestArgon2Params: the configured costs are what the PHC string says and
// what the hash was computed with; hashes of other costs, the 64 MiB ones
// written before included, keep verifying with their own.
func TestArgon2Params(t *testing.T) {
	h := Hasher{Scheme: SchemeArgon2ID, Argon2: Argon2Params{Memory: 8 * 1024, Time: 3, Threads: 2}}
	stored, err := h.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{ARGON2ID}$argon2id$v=19$m=8192,t=3,p=2$"; !strings.HasPrefix(stored, want) {
		t.Fatalf("Hash = %q, want prefix %q", stored, want)
	}
	p, err := parseArgon2(strings.TrimPrefix(stored, "{ARGON2ID}"))
	if err != nil {
		t.Fatal(err)
	}
	// Recompute with the written costs: the sum must match them, not the defaults.
	if got := argon2Key(cryptArgon2ID, []byte(pw), p.salt, 3, 8*1024, 2, argon2KeyLen); string(got) != string(p.sum) {
		t.Error("hash not computed with the parameters its PHC string names")
	}
	old := "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$ZbMIaHldViOkHEGy2OzK2g$kkjY5IlKQZunm9vvcyZLab12fWEitmdmQ4XrcGHnOJg"
	for _, s := range []string{stored, old} {
		if ok, err := Verify(s, pw); !ok || err != nil {
			t.Errorf("Verify(%.50s) = %v, %v", s, ok, err)
		}
	}
	def, err := Hasher{}.Hash(pw)
	if err != nil || !strings.HasPrefix(def, "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("default Hasher = %q, %v; want argon2id m=19456,t=2,p=1", def, err)
	}
}

func TestArgon2ParamsValidate(t *testing.T) {
	for _, p := range []Argon2Params{
		{Memory: 7},              // below 8 KiB a lane
		{Memory: 16, Threads: 4}, // likewise
		{Memory: 2 << 20},        // above what Verify checks
		{Time: 17}, {Threads: 65},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
		if _, err := (Hasher{Argon2: p}).Hash(pw); err == nil {
			t.Errorf("Hash with %+v succeeded", p)
		}
	}
	if err := (Argon2Params{}).Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

func TestNeedsRehash(t *testing.T) {
	argon := Hasher{Scheme: SchemeArgon2ID, Argon2: Argon2Params{Memory: 19 * 1024, Time: 2}}
	bcrypt := Hasher{Scheme: SchemeBlfCrypt}
	for _, c := range []struct {
		h      Hasher
		stored string
		want   bool
	}{
		{argon, "cleartext", true},
		{argon, "{PLAIN}x", true},
		{argon, "{MD5}X03MO1qnZdYdgyfeuILPmQ==", true},
		{argon, "{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA==", true},
		{argon, "{CRYPT}$1$salt$qJH7.N4xYta3aEG/dfqo/0", true},
		{argon, "$6$salt$Zq1WF8yWoZgLhQwrLpg7wEbVGP6L8gFmQyLBm2QsyWTRq1Jq5H6GuuAXRsBBzvEFOTwxrb6WqiZ2M0e2HIHN41", true},
		{argon, "{BLF-CRYPT}$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234", true},
		{argon, "{ARGON2I}$argon2i$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", true},
		{argon, "{ARGON2ID}$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", true},  // less memory
		{argon, "{ARGON2ID}$argon2id$v=19$m=19456,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", true}, // fewer passes
		{argon, "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", false},
		{argon, "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", false}, // stronger: kept
		{argon, "{FOO}x", false},                // unreadable: left alone
		{argon, "{ARGON2ID}$argon2id$x", false}, // malformed
		{bcrypt, "{ARGON2ID}$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", false},
		{bcrypt, "{BLF-CRYPT}$2y$08$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234", true},
		{bcrypt, "{BLF-CRYPT}$2y$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234", false},
		{Hasher{Scheme: SchemeSSHA512}, "{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA==", true},
		{Hasher{Scheme: SchemeSSHA}, "{SSHA512}x", false},
		{Hasher{Scheme: SchemeCrypt}, "{CRYPT}$6$rounds=1000$salt$Zq1WF8yWoZgLhQwrLpg7wEbVGP6L8gFmQyLBm2QsyWTRq1Jq5H6GuuAXRsBBzvEFOTwxrb6WqiZ2M0e2HIHN41", true},
		{Hasher{Scheme: SchemeCrypt}, "{CRYPT}$6$salt$Zq1WF8yWoZgLhQwrLpg7wEbVGP6L8gFmQyLBm2QsyWTRq1Jq5H6GuuAXRsBBzvEFOTwxrb6WqiZ2M0e2HIHN41", false},
	} {
		if got := c.h.NeedsRehash(c.stored); got != c.want {
			t.Errorf("%s: NeedsRehash(%.60s) = %v, want %v", c.h.Scheme, c.stored, got, c.want)
		}
	}
}

func TestIsSlow(t *testing.T) {
	for stored, want := range map[string]bool{
		"cleartext": false,
		"{SSHA}36T+CZy/LLJL94gOZ6WxairV8moBAgMEBQYHCA==": false,
		"{CRYPT}ab01FAX.bQRSU":                           false, // DES: microseconds
		"{MD5}$1$salt$qJH7.N4xYta3aEG/dfqo/0":            true,
		"$6$salt$x":                                      true,
		"{BLF-CRYPT}$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234": true,
		"{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g":        true,
		"{FOO}x": false,
	} {
		if got := IsSlow(stored); got != want {
			t.Errorf("IsSlow(%.50s) = %v, want %v", stored, got, want)
		}
	}
}
