package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tohost/tohost/directory/password"
)

// hashFlags say how new passwords are hashed. tohost directory and tohost
// import both hash cleartext passwords, so both take the same flags and a
// user gets the same hash whichever way the password came in.
type hashFlags struct {
	scheme  string
	memory  kibibytes
	time    uint32
	threads uint8
}

func (f *hashFlags) register(fl *pflag.FlagSet, schemeUsage string) {
	f.memory = password.DefaultArgon2Memory
	fl.StringVar(&f.scheme, "password-scheme", "ARGON2ID", schemeUsage)
	fl.Var(&f.memory, "argon2-memory", "memory of a new ARGON2ID hash: KiB, or a size such as 19MiB or 64MiB (stored hashes verify with their own)")
	fl.Uint32Var(&f.time, "argon2-time", password.DefaultArgon2Time, "passes of a new ARGON2ID hash over its memory")
	fl.Uint8Var(&f.threads, "argon2-threads", password.DefaultArgon2Threads, "lanes of a new ARGON2ID hash, each computed on a core of its own")
}

// hasher returns the configured Hasher, or an error naming the flag.
func (f *hashFlags) hasher() (password.Hasher, error) {
	scheme, err := password.ParseScheme(f.scheme)
	if err != nil {
		return password.Hasher{}, fmt.Errorf("--password-scheme: %w", err)
	}
	if f.time == 0 || f.threads == 0 {
		return password.Hasher{}, fmt.Errorf("--argon2-time and --argon2-threads must be at least 1")
	}
	p := password.Argon2Params{Memory: uint32(f.memory), Time: f.time, Threads: f.threads}
	if err := p.Validate(); err != nil {
		return password.Hasher{}, fmt.Errorf("--argon2-memory, --argon2-time, --argon2-threads: %w", err)
	}
	return password.Hasher{Scheme: scheme, Argon2: p}, nil
}

// kibibytes is a size flag in KiB, argon2's unit: a bare number is KiB,
// and KiB, MiB and GiB (or K, M, G) suffixes are taken, in any case.
type kibibytes uint32

func (k *kibibytes) String() string {
	if *k != 0 && *k%1024 == 0 {
		return strconv.FormatUint(uint64(*k/1024), 10) + "MiB"
	}
	return strconv.FormatUint(uint64(*k), 10) + "KiB"
}

func (k *kibibytes) Type() string { return "size" }

func (k *kibibytes) Set(s string) error {
	num := strings.TrimSpace(s)
	unit := uint64(1)
	up := strings.ToUpper(num)
	for _, u := range []struct {
		suffix string
		kib    uint64
	}{{"KIB", 1}, {"MIB", 1024}, {"GIB", 1024 * 1024}, {"K", 1}, {"M", 1024}, {"G", 1024 * 1024}} {
		if strings.HasSuffix(up, u.suffix) {
			num, unit = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.kib
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil || n*unit > 1<<32-1 {
		return fmt.Errorf("%q is not a size in KiB, or with a KiB, MiB or GiB suffix", s)
	}
	*k = kibibytes(n * unit)
	return nil
}
