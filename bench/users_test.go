package bench

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"math"
	"testing"
)

// Golden values pin the population (shared with the reference benchmark
// generator, whose files must keep matching):
// changing them invalidates generated data and any server loaded from it.
func TestGolden(t *testing.T) {
	const i = 123456
	if got, want := Login(i), "user0123456@domain56.example"; got != want {
		t.Errorf("Login = %q, want %q", got, want)
	}
	if got, want := DN(i), "uid=user0123456@domain56.example,ou=users,dc=example,dc=com"; got != want {
		t.Errorf("DN = %q, want %q", got, want)
	}
	if got, want := Password(i), "pw-0123456"; got != want {
		t.Errorf("Password = %q, want %q", got, want)
	}
	if got, want := ToHost(i), "backend3.example"; got != want {
		t.Errorf("ToHost = %q, want %q", got, want)
	}
	if got, want := Quota(i), int64(524288000); got != want {
		t.Errorf("Quota = %d, want %d", got, want)
	}
	if got, want := Name(i), "Peggy Hall"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	if got, want := PasswordHash(0), "{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w=="; got != want {
		t.Errorf("PasswordHash(0) = %q, want %q", got, want)
	}
}

// The append-based formatting must equal the reference fmt formatting
// (fmt's %07d and %02d) for every index, including odd ones.
func TestFormatMatchesFmt(t *testing.T) {
	idx := []int{0, 1, 9, 10, 99, 100, 123456, 999999, 1000000, 9999999, 10000000, 123456789,
		-1, -5, -99, -123456, -1234567, math.MaxInt, math.MinInt}
	for i := 0; i < 2000; i++ {
		idx = append(idx, i*7919)
	}
	for _, i := range idx {
		if got, want := Login(i), fmt.Sprintf("user%07d@domain%02d.example", i, i%Domains); got != want {
			t.Errorf("Login(%d) = %q, want %q", i, got, want)
		}
		if got, want := MissLogin(i), fmt.Sprintf("nouser%07d@domain%02d.example", i, i%Domains); got != want {
			t.Errorf("MissLogin(%d) = %q, want %q", i, got, want)
		}
		if got, want := Password(i), fmt.Sprintf("pw-%07d", i); got != want {
			t.Errorf("Password(%d) = %q, want %q", i, got, want)
		}
		if got, want := ToHost(i), fmt.Sprintf("backend%d.example", mix(uint64(i), 1)%Backends+1); got != want {
			t.Errorf("ToHost(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestAppendLoginAllocs(t *testing.T) {
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = AppendLogin(buf[:0], 1234567) }); n != 0 {
		t.Errorf("AppendLogin allocates %v times", n)
	}
}

func TestSSHAFormat(t *testing.T) {
	h := PasswordHash(42)
	raw, err := base64.StdEncoding.DecodeString(h[len("{SSHA}"):])
	if err != nil || len(raw) != sha1.Size+8 {
		t.Fatalf("bad hash %q (%v)", h, err)
	}
	sum := sha1.Sum(append([]byte(Password(42)), raw[sha1.Size:]...))
	if string(sum[:]) != string(raw[:sha1.Size]) {
		t.Fatal("digest is not sha1(password+salt)")
	}
	if !CheckSSHA(h, Password(42)) || CheckSSHA(h, "wrong") || CheckSSHA("{SHA}x", Password(42)) {
		t.Fatal("CheckSSHA")
	}
}

func TestSpread(t *testing.T) {
	hosts := map[string]int{}
	for i := 0; i < 10000; i++ {
		hosts[ToHost(i)]++
	}
	if len(hosts) != Backends {
		t.Fatalf("hosts = %v", hosts)
	}
	for h, n := range hosts {
		if n < 2000 || n > 3000 {
			t.Errorf("host %s has %d of 10000 users", h, n)
		}
	}
}

func BenchmarkLogin(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		_ = Login(i)
	}
}

func BenchmarkAppendLogin(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	for i := range b.N {
		buf = AppendLogin(buf[:0], i)
	}
}
