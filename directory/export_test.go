package directory

import "github.com/tohost/tohost/directory/password"

// Hooks for the tests of package directory_test. Each returns a function
// that restores what it replaced.

// HookVerify makes f see every verification of a stored or stand-in hash.
func HookVerify(f func(stored, plain string)) (restore func()) {
	oldStored, oldStandIn := verifyStored, verifyStandIn
	verifyStored = func(stored, plain string) (bool, error) { f(stored, plain); return oldStored(stored, plain) }
	verifyStandIn = func(stored, plain string) (bool, error) { f(stored, plain); return oldStandIn(stored, plain) }
	return func() { verifyStored, verifyStandIn = oldStored, oldStandIn }
}

// HookBeforeRehash runs f between a login's verification and its rehash.
func HookBeforeRehash(f func()) (restore func()) {
	old := beforeRehash
	beforeRehash = f
	return func() { beforeRehash = old }
}

// HashPool is the pool the service's slow hashes run in.
func (s *Service) HashPool() *password.Pool { return s.pool }
