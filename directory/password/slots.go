package password

import (
	"runtime"
	"sync/atomic"
)

// hashSlots bounds the slow hashes (bcrypt, sha-crypt, argon2) computed at
// once in the process, whichever connection or import asks: a client that
// pipelines thousands of checks on one connection, or thousands of clients
// at once, must not start thousands of 64 MiB argon2 computations. Beyond
// the number of cores more at once would only share the same CPUs, so the
// rest wait their turn.
var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// slowCalls and slowRunning count the slow hashes asked for and those
// being computed; slowPeak is the most computed at once. Tests read them.
var slowCalls, slowRunning, slowPeak atomic.Int64

// slow runs fn, a slow hash, in a hash slot.
func slow[T any](fn func() (T, error)) (T, error) {
	slowCalls.Add(1)
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	n := slowRunning.Add(1)
	defer slowRunning.Add(-1)
	for p := slowPeak.Load(); n > p && !slowPeak.CompareAndSwap(p, n); p = slowPeak.Load() {
	}
	return fn()
}
