package password

import "sync"

// cacheShard is an LRU of users' entries. A cache sized for millions of
// users must cost little per entry, so the entries live in one slice and
// link to each other by index (no allocation per entry), and the map goes
// from a 64-bit hash of the name to the index: no copy of the name is
// kept. Two names with one hash (one chance in 2^64 per pair) share an
// entry, which costs them a verification now and then, never a false hit:
// the HMAC covers the name.
type cacheShard struct {
	mu    sync.Mutex
	max   int
	index map[uint64]int32 // hash of the user → slot
	slots []cacheSlot
	head  int32 // most recently used, or none
	tail  int32 // least recently used, or none
	free  int32 // first unused slot (linked by next), or none
}

const none = -1

// cacheSlot is one user's entry, or an unused slot.
type cacheSlot struct {
	user       uint64 // hash of the name
	key        cacheKey
	expires    int64 // Unix ns
	prev, next int32
}

func (s *cacheShard) init(max int) {
	s.max = max
	s.index = make(map[uint64]int32)
	s.head, s.tail, s.free = none, none, none
}

// hit reports whether user's entry has key and is alive at now; a live
// entry becomes the most recent. A different key leaves the entry alone:
// a wrong guess must not evict the right password.
func (s *cacheShard) hit(user uint64, key cacheKey, now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[user]
	if !ok || s.slots[i].key != key {
		return false
	}
	if now >= s.slots[i].expires {
		s.removeLocked(i)
		return false
	}
	s.unlinkLocked(i)
	s.pushFrontLocked(i)
	return true
}

// add sets user's entry, evicting the least recently used if full.
func (s *cacheShard) add(user uint64, key cacheKey, expires int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[user]; ok {
		s.slots[i].key, s.slots[i].expires = key, expires
		s.unlinkLocked(i)
		s.pushFrontLocked(i)
		return
	}
	if len(s.index) >= s.max {
		s.removeLocked(s.tail)
	}
	i := s.allocLocked()
	s.slots[i] = cacheSlot{user: user, key: key, expires: expires}
	s.index[user] = i
	s.pushFrontLocked(i)
}

func (s *cacheShard) forget(user uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[user]; ok {
		s.removeLocked(i)
	}
}

func (s *cacheShard) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

func (s *cacheShard) allocLocked() int32 {
	if i := s.free; i != none {
		s.free = s.slots[i].next
		return i
	}
	s.slots = append(s.slots, cacheSlot{})
	return int32(len(s.slots) - 1)
}

func (s *cacheShard) removeLocked(i int32) {
	delete(s.index, s.slots[i].user)
	s.unlinkLocked(i)
	s.slots[i] = cacheSlot{next: s.free}
	s.free = i
}

func (s *cacheShard) unlinkLocked(i int32) {
	e := &s.slots[i]
	if e.prev != none {
		s.slots[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next != none {
		s.slots[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = none, none
}

func (s *cacheShard) pushFrontLocked(i int32) {
	e := &s.slots[i]
	e.prev, e.next = none, s.head
	if s.head != none {
		s.slots[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}
