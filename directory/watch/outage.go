package watch

import (
	"sync"
	"sync/atomic"
	"time"
)

// Outage follows one dependency's outages so that each is logged once per
// state change: Fail reports the failure that began one, End the call
// that ended it, with how many calls failed and for how long. The zero
// value is up.
type Outage struct {
	down atomic.Bool // read by every call; the rest only when it changes

	mu     sync.Mutex
	since  time.Time // when the outage began
	failed int64     // calls failed since
}

// Down reports whether an outage is under way.
func (o *Outage) Down() bool { return o.down.Load() }

// Fail counts a failed call and reports whether it began an outage.
func (o *Outage) Fail() (began bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed++
	if o.down.Load() {
		return false
	}
	o.down.Store(true)
	o.since = time.Now()
	return true
}

// End ends the outage, if one is under way, and reports how many calls
// failed during it and for how long it lasted; ended is false if another
// call got here first or there was none.
func (o *Outage) End() (failed int64, downFor time.Duration, ended bool) {
	if !o.down.Load() {
		return 0, 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down.Load() {
		return 0, 0, false // another call got here first
	}
	o.down.Store(false)
	failed, downFor = o.failed, time.Since(o.since)
	o.failed = 0
	return failed, downFor, true
}
