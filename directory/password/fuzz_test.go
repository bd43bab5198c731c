package password

import (
	"strings"
	"testing"
)

// fuzzLimits keep each input cheap: the fuzzer turns "m=64" into
// "m=6400000" in no time, and the production limits allow seconds of work.
var fuzzLimits = &limits{
	bcryptCost:     5,
	shaCryptRounds: 5000,
	argonMemory:    256,
	argonTime:      2,
	argonThreads:   4,
}

func FuzzVerify(f *testing.F) {
	for _, v := range vectors {
		if strings.Contains(v.stored, "m=65536") || strings.Contains(v.stored, "rounds=10000") {
			continue // above fuzzLimits
		}
		f.Add(v.stored, v.plain)
	}
	f.Add("{SSHA}", "")
	f.Add("{CRYPT}$6$rounds=$$", "x")
	f.Add("$argon2id$v=19$m=,t=,p=$$", "x")
	f.Add("{", "}")
	f.Fuzz(func(t *testing.T, stored, plain string) {
		ok, err := fuzzLimits.verify(stored, plain)
		if err != nil && ok {
			t.Fatalf("verify(%q, %q) = true with error %v", stored, plain, err)
		}
		// A value with no prefix and no crypt id is cleartext: it matches
		// itself.
		if _, _, prefixed := splitPrefix(stored); !prefixed && bareCryptKind(stored) == cryptNone && len(stored) <= MaxPasswordLen {
			if ok, err := fuzzLimits.verify(stored, stored); !ok || err != nil {
				t.Fatalf("cleartext %q does not match itself: %v, %v", stored, ok, err)
			}
		}
		HasScheme(stored)
	})
}
