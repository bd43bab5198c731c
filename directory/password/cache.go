package password

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// VerifyCache remembers successful verifications for a short time, so that
// clients which log in again every minute do not pay for argon2id or bcrypt
// each time.
//
// An entry is keyed by HMAC-SHA256, under a random per-process key, of the
// user, the stored hash and the password: the password itself is never kept,
// and an entry means nothing outside this process. Because the stored hash is part of the key, a password changed on
// another node makes the old entry miss as soon as this node sees the new
// hash, even before Forget is called.
//
// Only successes are cached: a failed attempt always costs the full scheme,
// so the cache does not make guessing cheaper. The TTL counts from the
// verification, not the last hit, so an entry never outlives it.
//
// A nil *VerifyCache, or one made with maxEntries or ttl <= 0, caches
// nothing and just calls Verify. It is safe for concurrent use.
type VerifyCache struct {
	max int
	ttl time.Duration

	// Replaceable in tests.
	now    func() time.Time
	verify func(stored, plain string) (bool, error)

	keyers sync.Pool // *cacheKeyer, so a hit allocates nothing

	mu     sync.Mutex
	lru    list.List // of *cacheEntry, most recently used first
	byKey  map[cacheKey]*list.Element
	byUser map[string][]*list.Element // for Forget; a user has few entries
}

type cacheKey [sha256.Size]byte

type cacheEntry struct {
	key     cacheKey
	user    string
	expires time.Time
}

// cacheKeyer holds an HMAC and a scratch buffer for one key computation.
type cacheKeyer struct {
	mac hash.Hash
	buf []byte
	sum []byte // Sum into a pooled slice: a stack array would escape through the interface
}

// NewVerifyCache returns a cache of at most maxEntries successful
// verifications, each valid for ttl. A few minutes is plenty: long enough
// for clients that poll, short enough that a revoked password stops working
// soon even if an invalidation is lost.
func NewVerifyCache(maxEntries int, ttl time.Duration) *VerifyCache {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic("password: no randomness for the verify cache key: " + err.Error())
	}
	c := &VerifyCache{
		max:    maxEntries,
		ttl:    ttl,
		now:    time.Now,
		verify: Verify,
		byKey:  make(map[cacheKey]*list.Element),
		byUser: make(map[string][]*list.Element),
	}
	c.keyers.New = func() any { return &cacheKeyer{mac: hmac.New(sha256.New, secret)} }
	return c
}

// Verify is Verify(stored, plain), answered from the cache when the same
// user, stored hash and password verified successfully within the TTL.
func (c *VerifyCache) Verify(user, stored, plain string) (bool, error) {
	if c == nil || c.max <= 0 || c.ttl <= 0 {
		return Verify(stored, plain)
	}
	k := c.key(user, stored, plain)
	if c.hit(k) {
		return true, nil
	}
	ok, err := c.verify(stored, plain)
	if ok && err == nil {
		c.add(k, user)
	}
	return ok, err
}

// Forget drops every entry of user: call it when the password changes or
// the user is deleted or renamed.
func (c *VerifyCache) Forget(user string) {
	if c == nil || c.byUser == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.byUser[user] {
		delete(c.byKey, el.Value.(*cacheEntry).key)
		c.lru.Remove(el)
	}
	delete(c.byUser, user)
}

// Len returns the number of entries, expired ones included until they are
// evicted or looked up.
func (c *VerifyCache) Len() int {
	if c == nil || c.byKey == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
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
	k := cacheKey(kr.sum)
	clear(b) // the buffer held the password
	kr.buf = b
	c.keyers.Put(kr)
	return k
}

func (c *VerifyCache) hit(k cacheKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return false
	}
	if !c.now().Before(el.Value.(*cacheEntry).expires) {
		c.removeLocked(el)
		return false
	}
	c.lru.MoveToFront(el)
	return true
}

func (c *VerifyCache) add(k cacheKey, user string) {
	expires := c.now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok { // a concurrent miss got here first
		el.Value.(*cacheEntry).expires = expires
		c.lru.MoveToFront(el)
		return
	}
	el := c.lru.PushFront(&cacheEntry{key: k, user: user, expires: expires})
	c.byKey[k] = el
	c.byUser[user] = append(c.byUser[user], el)
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *VerifyCache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	delete(c.byKey, e.key)
	c.lru.Remove(el)
	els := c.byUser[e.user]
	for i, x := range els {
		if x == el {
			els[i] = els[len(els)-1]
			els[len(els)-1] = nil
			els = els[:len(els)-1]
			break
		}
	}
	if len(els) == 0 {
		delete(c.byUser, e.user)
	} else {
		c.byUser[e.user] = els
	}
}
