package password

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"hash/maphash"
	"sync"
	"time"
)

// VerifyCache remembers successful verifications, so that clients which
// log in again and again (a POP3 client polling every few minutes, a
// webmail that checks on every request) do not pay for argon2id or bcrypt
// each time.
//
// It holds one entry per user: an HMAC-SHA256, under a random per-process
// key and cut to 128 bits, of the user, the stored hash and the password,
// and when it expires. The password itself is never kept, and an entry
// means nothing outside this process. Because the stored hash is part of
// the HMAC, a password changed on another node makes the entry miss as
// soon as this node reads the new hash (its record cache is invalidated
// across nodes), even before Forget is called.
//
// Only successes are cached: a failed attempt always costs the full
// scheme, so the cache does not make guessing cheaper, and it does not
// evict the user's entry either. The TTL counts from the verification, not
// the last hit, so an entry never outlives it. Past maxEntries the least
// recently used entry of a shard goes.
//
// A nil *VerifyCache, or one made with maxEntries or ttl <= 0, caches
// nothing and just verifies. It is safe for concurrent use.
type VerifyCache struct {
	ttl    time.Duration
	shards []cacheShard
	seed   maphash.Seed

	// Replaceable in tests.
	now    func() time.Time
	verify func(stored, plain string) (bool, error)

	keyers sync.Pool // *cacheKeyer, so a hit allocates nothing
}

// cacheKey is the truncated HMAC: 128 bits leave a chance collision out of
// reach, and without the process's key nobody can aim for one.
type cacheKey [16]byte

// cacheKeyer holds an HMAC and a scratch buffer for one key computation.
type cacheKeyer struct {
	mac hash.Hash
	buf []byte
	sum []byte // Sum into a pooled slice: a stack array would escape through the interface
}

// cacheShards splits a large cache so that hits on several cores do not
// queue on one lock; a small one keeps a single, exact LRU.
func cacheShards(maxEntries int) int {
	if maxEntries < 64*1024 {
		return 1
	}
	return 64
}

// NewVerifyCache returns a cache of at most maxEntries users' successful
// verifications, each valid for ttl.
func NewVerifyCache(maxEntries int, ttl time.Duration) *VerifyCache {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic("password: no randomness for the verify cache key: " + err.Error())
	}
	c := &VerifyCache{ttl: ttl, seed: maphash.MakeSeed(), now: time.Now, verify: Verify}
	if maxEntries > 0 && ttl > 0 {
		n := cacheShards(maxEntries)
		c.shards = make([]cacheShard, n)
		for i := range c.shards {
			c.shards[i].init((maxEntries + n - 1) / n)
		}
	}
	c.keyers.New = func() any { return &cacheKeyer{mac: hmac.New(sha256.New, secret)} }
	return c
}

// Verify is Verify(stored, plain), answered from the cache when the same
// user, stored hash and password verified successfully within the TTL.
func (c *VerifyCache) Verify(user, stored, plain string) (bool, error) {
	verify := Verify
	if c != nil {
		verify = c.verify
	}
	return c.VerifyFunc(user, stored, plain, verify)
}

// VerifyFunc is Verify, with verify checking a miss: a caller that runs
// slow hashes in a Pool passes a function that does.
func (c *VerifyCache) VerifyFunc(user, stored, plain string, verify func(stored, plain string) (bool, error)) (bool, error) {
	if c == nil || c.shards == nil {
		return verify(stored, plain)
	}
	k := c.key(user, stored, plain)
	h := c.userHash(user)
	if c.shard(h).hit(h, k, c.now().UnixNano()) {
		return true, nil
	}
	ok, err := verify(stored, plain)
	if ok && err == nil {
		c.add(user, k)
	}
	return ok, err
}

// Remember records that plain verifies against stored, as a successful
// Verify does: for a hash just computed from plain.
func (c *VerifyCache) Remember(user, stored, plain string) {
	if c == nil || c.shards == nil {
		return
	}
	c.add(user, c.key(user, stored, plain))
}

// Forget drops the entry of user: call it when the password changes or
// the user is deleted or renamed.
func (c *VerifyCache) Forget(user string) {
	if c == nil || c.shards == nil {
		return
	}
	h := c.userHash(user)
	c.shard(h).forget(h)
}

// Len returns the number of entries, expired ones included until they are
// evicted or looked up.
func (c *VerifyCache) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		n += c.shards[i].len()
	}
	return n
}

func (c *VerifyCache) userHash(user string) uint64 { return maphash.String(c.seed, user) }

// shard picks by the high bits: the map inside hashes the whole value.
func (c *VerifyCache) shard(h uint64) *cacheShard {
	return &c.shards[(h>>32)%uint64(len(c.shards))]
}

func (c *VerifyCache) add(user string, k cacheKey) {
	h := c.userHash(user)
	c.shard(h).add(h, k, c.now().Add(c.ttl).UnixNano())
}

// key computes the HMAC over length-prefixed fields, so that no two
// different (user, stored, plain) triples share an input.
func (c *VerifyCache) key(user, stored, plain string) cacheKey {
	kr := c.keyers.Get().(*cacheKeyer)
	b := kr.buf[:0]
	for _, s := range [...]string{user, stored, plain} {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	kr.mac.Reset()
	kr.mac.Write(b)
	kr.sum = kr.mac.Sum(kr.sum[:0])
	k := cacheKey(kr.sum[:len(cacheKey{})])
	clear(b) // the buffer held the password
	kr.buf = b
	c.keyers.Put(kr)
	return k
}
