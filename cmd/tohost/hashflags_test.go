package main

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
)

func TestKibibytes(t *testing.T) {
	for in, want := range map[string]kibibytes{
		"19MiB": 19 * 1024, "19456": 19456, "64 mib": 64 * 1024, "512KiB": 512, "1G": 1 << 20, "8k": 8,
	} {
		var k kibibytes
		if err := k.Set(in); err != nil || k != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, k, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "19MB", "-1", "4096GiB", "1.5MiB"} {
		var k kibibytes
		if err := k.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted: %d", bad, k)
		}
	}
	k := kibibytes(19 * 1024)
	if k.String() != "19MiB" {
		t.Errorf("String = %q", k.String())
	}
}

// TestArgon2Flags: the flags of tohost directory and tohost import give
// hashes with those costs, set through the Service as through the import;
// by default the RFC 9106 / OWASP costs.
func TestArgon2Flags(t *testing.T) {
	parse := func(args ...string) password.Hasher {
		t.Helper()
		var f hashFlags
		fl := pflag.NewFlagSet("x", pflag.ContinueOnError)
		f.register(fl, "")
		if err := fl.Parse(args); err != nil {
			t.Fatal(err)
		}
		h, err := f.hasher()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	st, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for want, args := range map[string][]string{
		"$argon2id$v=19$m=19456,t=2,p=1$": nil,
		"$argon2id$v=19$m=8192,t=3,p=2$":  {"--argon2-memory", "8MiB", "--argon2-time", "3", "--argon2-threads", "2"},
		"$argon2id$v=19$m=1000,t=1,p=1$":  {"--argon2-memory=1000", "--argon2-time=1"},
	} {
		h := parse(args...)
		svc := directory.NewService(st, directoryFlags{}.serviceConfig(h))
		if _, err := svc.Set(ctx, "u@x", "pw", nil); err != nil {
			t.Fatal(err)
		}
		u, _ := st.Get(ctx, "u@x")
		imported, err := h.Hash("pw")
		for _, got := range []string{u.Password, imported} {
			if err != nil || !strings.HasPrefix(got, "{ARGON2ID}"+want) {
				t.Errorf("%v: hash %q, %v; want %s", args, got, err, want)
			}
		}
	}
	var f hashFlags
	fl := pflag.NewFlagSet("x", pflag.ContinueOnError)
	f.register(fl, "")
	fl.Parse([]string{"--argon2-memory", "2GiB"})
	if _, err := f.hasher(); err == nil || !strings.Contains(err.Error(), "--argon2-memory") {
		t.Errorf("2 GiB accepted: %v", err)
	}
}
