package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A replica takes the reads of user records (the cache misses) off the
// primary. Streaming replication lags, so a record just written may be
// older on the replica; two rules keep every read at least as new as the
// writes the node knows of:
//
//   - the replica is used only while it has replayed everything the
//     primary had written lag ago (a watcher compares the two servers' WAL
//     positions a few times a second);
//   - a name written less than lag ago (plus the watcher's slack) is read
//     from the primary. The node learns of writes it made itself, and of
//     other nodes' writes through the caches' invalidations (see Written);
//     "*" sends every read to the primary for that long.
//
// When the primary does not answer, reads stay on the replica: it is as
// new as any server that can answer, and is the likely next primary.
type replica struct {
	pool *pgxpool.Pool
	lag  time.Duration

	// freshUntil: Unix ns until which the last check's verdict holds (a
	// check that is late or fails lets it lapse: reads go to the primary).
	freshUntil atomic.Int64
	allUntil   atomic.Int64 // Unix ns: every read goes to the primary until then

	reads atomic.Uint64 // reads served by the replica

	mu     sync.Mutex
	recent map[string]int64 // name → Unix ns until which it is read from the primary

	samples []lsnSample // the primary's WAL positions, oldest first (watcher only)
	stop    context.CancelFunc
	done    chan struct{}
}

type lsnSample struct {
	at  time.Time
	lsn int64
}

// watchEvery is how often the watcher compares WAL positions. A verdict
// holds for two periods and its sample is up to one period older than
// lag, so the window of a written name is lag plus three periods.
const watchEvery = 200 * time.Millisecond

const (
	primaryLSN = `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`
	replicaLSN = `SELECT coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
		ELSE pg_current_wal_lsn() END) - '0/0'::pg_lsn, 0)::bigint`
)

func (r *replica) window() time.Duration { return r.lag + 3*watchEvery }

// usable reports whether name may be read from the replica now.
func (r *replica) usable(name string) bool {
	now := time.Now().UnixNano()
	if now >= r.freshUntil.Load() || now < r.allUntil.Load() {
		return false
	}
	r.mu.Lock()
	until, ok := r.recent[name]
	r.mu.Unlock()
	return !ok || now >= until
}

// written sends reads of name ("*": of every name) to the primary for the
// window.
func (r *replica) written(name string) {
	until := time.Now().Add(r.window()).UnixNano()
	if name == "*" {
		r.allUntil.Store(until)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recent) >= 4096 {
		r.prune()
	}
	r.recent[name] = until
}

// prune drops expired names; the caller holds mu.
func (r *replica) prune() {
	now := time.Now().UnixNano()
	for n, until := range r.recent {
		if now >= until {
			delete(r.recent, n)
		}
	}
}

// watch keeps fresh up to date until ctx is done.
func (r *replica) watch(ctx context.Context, primary *pgxpool.Pool) {
	defer close(r.done)
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		// The verdict is as old as its sample: counted from the start.
		start := time.Now()
		if r.check(ctx, primary) {
			r.freshUntil.Store(start.Add(2 * watchEvery).UnixNano())
		} else {
			r.freshUntil.Store(0)
		}
		r.mu.Lock()
		r.prune()
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check samples the primary's WAL position and reports whether the
// replica has replayed the newest sample that is at least lag old.
func (r *replica) check(ctx context.Context, primary *pgxpool.Pool) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*watchEvery)
	defer cancel()
	var have int64
	if r.pool.QueryRow(ctx, replicaLSN).Scan(&have) != nil {
		return false
	}
	var lsn int64
	if primary.QueryRow(ctx, primaryLSN).Scan(&lsn) != nil {
		r.samples = r.samples[:0]
		return true // no primary answers: the replica is the newest there is
	}
	now := time.Now()
	r.samples = append(r.samples, lsnSample{now, lsn})
	// Keep one sample at least lag old (the one to compare with) and the
	// newer ones.
	i := 0
	for i+1 < len(r.samples) && now.Sub(r.samples[i+1].at) >= r.lag {
		i++
	}
	r.samples = r.samples[i:]
	return now.Sub(r.samples[0].at) >= r.lag && have >= r.samples[0].lsn
}

func (r *replica) close() {
	r.stop()
	<-r.done
	r.pool.Close()
}
