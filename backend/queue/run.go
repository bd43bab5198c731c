package queue

import (
	"context"
	"sync"
	"time"
)

// Run delivers the queued messages until ctx is done: each due message is
// handed to a worker (at most Config.Workers at once, one worker per
// message); a new message wakes the runner at once. When ctx ends, the
// deliveries under way are broken off (their recipients stay pending) and
// Run returns once every worker has; the messages stay queued.
func (q *Queue) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, q.cfg.Workers)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		for {
			it := q.due(time.Now())
			if it == nil {
				break
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				q.release(it)
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.process(ctx, it)
				q.release(it)
				<-slots
				q.poke() // the message may be due again at once (bounce, new transaction)
			}()
		}
		timer.Reset(q.nextWake(time.Now()))
		select {
		case <-ctx.Done():
			return nil
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// due marks busy and returns a message whose next attempt has come and
// that no worker holds; nil if there is none.
func (q *Queue) due(now time.Time) *item {
	q.mu.Lock()
	defer q.mu.Unlock()
	var best *item
	for _, it := range q.items {
		if it.busy || it.env.NextAttempt.After(now) {
			continue
		}
		if best == nil || it.env.NextAttempt.Before(best.env.NextAttempt) {
			best = it
		}
	}
	if best != nil {
		best.busy = true
	}
	return best
}

func (q *Queue) release(it *item) {
	q.mu.Lock()
	it.busy = false
	q.mu.Unlock()
}

// nextWake is how long until the earliest next attempt of a message no
// worker holds (a worker pokes the runner when it lets go of one).
func (q *Queue) nextWake(now time.Time) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	wait := time.Hour
	for _, it := range q.items {
		if !it.busy {
			wait = min(wait, it.env.NextAttempt.Sub(now))
		}
	}
	return max(wait, time.Millisecond)
}

// backoff is the wait after the given number of attempts: Retry doubled
// at each attempt after the first, up to MaxRetry.
func (q *Queue) backoff(attempts int) time.Duration {
	d := q.cfg.Retry
	for i := 1; i < attempts && d < q.cfg.MaxRetry; i++ {
		d *= 2
	}
	return min(d, q.cfg.MaxRetry)
}

// process makes one attempt at a message: delivers its pending
// recipients, fails those whose lifetime is over, bounces the failed ones
// to the sender, and removes the message when nobody is left, or records
// its state for the next attempt.
func (q *Queue) process(ctx context.Context, it *item) {
	env := it.env
	log := q.log.With("id", env.ID)
	now := time.Now().UTC()
	env.NextAttempt = now.Add(q.cfg.Retry) // unless an attempt says otherwise
	if env.pending() {
		q.apply(env, q.deliver(ctx, env))
		if ctx.Err() != nil {
			// Stopping: what was learnt is kept, but the attempt was cut
			// short and does not count.
			q.saveOrLog(env)
			return
		}
		env.Attempts++
		if env.pending() && now.Sub(env.Created) >= q.cfg.Lifetime {
			q.expire(env)
		}
		env.NextAttempt = now.Add(q.backoff(env.Attempts))
	}
	if err := q.bounce(env); err != nil {
		log.Error("queue: bounce not queued; retried later", "err", err)
	}
	if env.pending() || len(env.unnotified()) > 0 {
		q.saveOrLog(env)
		return
	}
	if err := q.spool.removeMessage(env.ID); err != nil {
		log.Error("queue: removing a finished message", "err", err)
		return
	}
	q.mu.Lock()
	delete(q.items, env.ID)
	q.mu.Unlock()
	log.Info("queue: done", "attempts", env.Attempts)
}

// apply records the outcomes of an attempt in env.
func (q *Queue) apply(env *Envelope, outcomes []outcome) {
	for i, o := range outcomes {
		rc := &env.Recipients[i]
		if o.status == "" {
			continue // not tried
		}
		rc.Reply = o.reply
		q.cfg.Metrics.recipient(o.status)
		q.log.Info("queue: "+o.status, "id", env.ID, "rcpt", rc.Addr, "reply", o.reply)
		if o.status != deferred {
			rc.Status = o.status
		}
	}
}

// saveOrLog writes the envelope. When it cannot, the old one stays: the
// recipients done since are tried again after a restart (at least once).
func (q *Queue) saveOrLog(env *Envelope) {
	if err := q.spool.writeEnvelope(env); err != nil {
		q.log.Error("queue: writing the envelope", "id", env.ID, "err", err)
	}
}

// expire fails the pending recipients of a message past its lifetime.
func (q *Queue) expire(env *Envelope) {
	for i := range env.Recipients {
		rc := &env.Recipients[i]
		if rc.Status != Pending {
			continue
		}
		rc.Status, rc.Expired = Failed, true
		q.cfg.Metrics.recipient(Failed)
		q.log.Info("queue: expired", "id", env.ID, "rcpt", rc.Addr, "lifetime", q.cfg.Lifetime.String(), "last_reply", rc.Reply)
	}
}
