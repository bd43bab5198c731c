package password

import (
	"crypto/des"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestDESAgainstStdlib checks the hand-written DES core (tables, key
// schedule, rounds) against crypto/des. With salt ".." the expansion is
// unperturbed, so the two must agree exactly; the salt perturbation and the
// crypt(3) framing are covered by the perl-made vectors in password_test.go.
func TestDESAgainstStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var key, block [8]byte
		binary.BigEndian.PutUint64(key[:], r.Uint64())
		binary.BigEndian.PutUint64(block[:], r.Uint64())
		c, err := des.NewCipher(key[:])
		if err != nil {
			t.Fatal(err)
		}
		var want [8]byte
		c.Encrypt(want[:], block[:])
		ks := desKeySchedule(binary.BigEndian.Uint64(key[:]))
		e := desE
		got := desEncrypt(binary.BigEndian.Uint64(block[:]), &ks, &e)
		if got != binary.BigEndian.Uint64(want[:]) {
			t.Fatalf("DES(%x, %x) = %016x, crypto/des says %x", key, block, got, want)
		}
	}
}

func TestDESCrypt(t *testing.T) {
	// From perl's crypt (glibc/libxcrypt).
	for _, v := range []struct{ plain, want string }{
		{"password", "abJnggxhB/yWI"},
		{"test", "abgOeLfPimXQo"},
		{"", "abmF1QH4PEr.E"},
		{"password", "./xZjzHv5vzVE"},
		{"test", "./H7.I.sVn7zo"},
		{"a", "zZ/Dc0K.bMxrQ"},
		{"12345678", "zZYQyo/kK5WTQ"},
		{"test", "zZ2FT51eQDxN6"},
	} {
		if got := desCrypt(v.plain, v.want[0], v.want[1]); string(got[:]) != v.want {
			t.Errorf("crypt(%q, %q) = %q, want %q", v.plain, v.want[:2], got, v.want)
		}
	}
}
