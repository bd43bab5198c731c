// Package penalty slows down password guessing: after each failed login
// from an address, that address's next login waits longer (1 s, 2 s, 4 s...
// up to a ceiling), as Dovecot's auth penalty does. A success clears it;
// an address that stops failing is forgotten after a while. Memory is
// bounded however many addresses fail.
//
// A Penalty is keyed by what the caller counts failures of: the proxy by
// client address, the directory by client address and user name. The
// penalty is either waited out before the next attempt (Wait) or, where a
// wait would hold up other clients' requests behind it, the attempts
// inside the window are refused unchecked (Cooling).
package penalty

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the penalty's curve and memory.
type Config struct {
	// Base is the delay after one failure (default 1 s); each further
	// failure doubles it, up to Max (default 15 s).
	Base, Max time.Duration
	// Forget drops an address this long after its last failure
	// (default 15 minutes).
	Forget time.Duration
	// Size bounds the addresses remembered (default 100,000).
	Size int
}

// Penalty tracks failed logins by address. It is safe for concurrent use.
type Penalty[K comparable] struct {
	cfg Config
	now func() time.Time

	mu    sync.Mutex
	fails map[K]entry
	// held is len(fails), kept beside it so that the common case, no
	// failure remembered, costs a login one atomic load and no lock.
	held atomic.Int64
}

type entry struct {
	n    int
	last time.Time
}

// New returns a Penalty for cfg.
func New[K comparable](cfg Config) *Penalty[K] {
	if cfg.Base <= 0 {
		cfg.Base = time.Second
	}
	if cfg.Max <= 0 {
		cfg.Max = 15 * time.Second
	}
	if cfg.Forget <= 0 {
		cfg.Forget = 15 * time.Minute
	}
	if cfg.Size <= 0 {
		cfg.Size = 100_000
	}
	return &Penalty[K]{cfg: cfg, now: time.Now, fails: make(map[K]entry)}
}

// Delay returns how long a login from ip waits before it is checked.
func (p *Penalty[K]) Delay(ip K) time.Duration {
	if p == nil {
		return 0
	}
	if p.held.Load() == 0 {
		return 0
	}
	p.mu.Lock()
	e, ok := p.fails[ip]
	p.mu.Unlock()
	if !ok {
		return 0
	}
	return p.delay(e)
}

// delay is the wait after e's failures: none once they are forgotten.
func (p *Penalty[K]) delay(e entry) time.Duration {
	if p.now().Sub(e.last) > p.cfg.Forget {
		return 0
	}
	d := p.cfg.Base
	for i := 1; i < e.n && d < p.cfg.Max; i++ {
		d *= 2
	}
	return min(d, p.cfg.Max)
}

// Wait sleeps for ip's delay, or until ctx ends (then it returns ctx's
// error).
func (p *Penalty[K]) Wait(ctx context.Context, ip K) error {
	d := p.Delay(ip)
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed records a failed login from ip and returns how many failures in
// a row ip has now.
func (p *Penalty[K]) Failed(ip K) int {
	if p == nil {
		return 0
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.fails[ip]
	if !ok && len(p.fails) >= p.cfg.Size {
		p.evict(now)
	}
	if ok && now.Sub(e.last) > p.cfg.Forget {
		e.n = 0
	}
	p.fails[ip] = entry{n: e.n + 1, last: now}
	p.held.Store(int64(len(p.fails)))
	return e.n + 1
}

// Cooling reports whether ip's last failure is more recent than its
// delay: a login now would come sooner than Wait lets it.
func (p *Penalty[K]) Cooling(ip K) bool {
	if p == nil || p.held.Load() == 0 {
		return false
	}
	p.mu.Lock()
	e, ok := p.fails[ip]
	p.mu.Unlock()
	return ok && p.now().Sub(e.last) < p.delay(e)
}

// Succeeded clears ip's failures.
func (p *Penalty[K]) Succeeded(ip K) {
	if p == nil {
		return
	}
	if p.held.Load() == 0 {
		return
	}
	p.mu.Lock()
	delete(p.fails, ip)
	p.held.Store(int64(len(p.fails)))
	p.mu.Unlock()
}

// Len returns the number of addresses remembered.
func (p *Penalty[K]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fails)
}

// evict makes room: forgotten entries first, then, if none was, an
// arbitrary tenth of the map (map order), so a flood of addresses costs
// bounded memory and amortised constant time. Called with mu held.
func (p *Penalty[K]) evict(now time.Time) {
	for ip, e := range p.fails {
		if now.Sub(e.last) > p.cfg.Forget {
			delete(p.fails, ip)
		}
	}
	if len(p.fails) < p.cfg.Size {
		return
	}
	drop := max(1, p.cfg.Size/10)
	for ip := range p.fails {
		if drop == 0 {
			break
		}
		delete(p.fails, ip)
		drop--
	}
}
