package importer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tohost/tohost/directory"
)

// writer hands batches to the store's Bulk. Up to Concurrency() batches are
// written at once; a batch that shares a user with one in flight waits for
// it, so the later line of a file always wins.
type writer struct {
	run  *run
	dry  bool
	bulk directory.Bulk
	keep []string // normalized names of rejected records (replace mode)

	begun    chan struct{} // closed when bulk is set
	finished chan struct{} // closed with jobs
	jobs     chan *batch
	closed   bool

	mu       sync.Mutex
	cond     *sync.Cond
	inflight map[string]int // names of the batches being written
}

func newWriter(r *run, dry bool) *writer {
	w := &writer{run: r, dry: dry,
		begun: make(chan struct{}), finished: make(chan struct{}), jobs: make(chan *batch),
		inflight: map[string]int{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// queue hands b to a writer; the first batch begins the load.
func (w *writer) queue(ctx context.Context, b *batch) error {
	if w.dry {
		putBatch(b)
		return nil
	}
	if w.bulk == nil {
		r := w.run
		var expected int64
		if r.in.Size > 0 && b.end > 0 {
			expected = r.in.Size * int64(len(b.recs)) / b.end
		}
		bulk, err := r.store.BeginBulk(ctx, directory.BulkOptions{Mode: r.opts.Mode,
			Stamp: time.Now().Truncate(time.Microsecond), Expected: expected})
		if err != nil {
			return err
		}
		w.bulk = bulk
		close(w.begun)
	}
	if len(b.entries) == 0 {
		putBatch(b)
		return nil
	}
	if w.bulk.Concurrency() > 1 {
		if err := w.reserve(ctx, b); err != nil {
			return err
		}
	}
	select {
	case w.jobs <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reserve waits until no batch in flight holds one of b's names, then
// marks b's names as in flight.
func (w *writer) reserve(ctx context.Context, b *batch) error {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.conflicts(b) {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.cond.Wait()
	}
	for i := range b.entries {
		w.inflight[b.entries[i].Name]++
	}
	return nil
}

func (w *writer) conflicts(b *batch) bool {
	if len(w.inflight) == 0 {
		return false
	}
	for i := range b.entries {
		if w.inflight[b.entries[i].Name] > 0 {
			return true
		}
	}
	return false
}

func (w *writer) release(b *batch) {
	w.mu.Lock()
	for i := range b.entries {
		n := b.entries[i].Name
		if w.inflight[n]--; w.inflight[n] <= 0 {
			delete(w.inflight, n)
		}
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// closeQueue tells the writers that no batch follows.
func (w *writer) closeQueue() {
	if !w.closed {
		w.closed = true
		close(w.jobs)
		close(w.finished)
	}
}

// wait runs the writers until the queue is closed or one fails. An
// interruption (ctx done) stops them taking batches, but the batches in
// flight finish, so that the counts say exactly what was committed; only
// opts.Cleanup (a second interruption) or a failing writer cancels them.
func (w *writer) wait(ctx context.Context) error {
	select {
	case <-w.begun:
	case <-w.finished:
		select {
		case <-w.begun: // begun, then finished at once
		default:
			return nil // nothing was queued
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	wctx, cancel := context.WithCancel(w.run.opts.Cleanup)
	defer cancel()
	g := new(errgroup.Group)
	for range w.bulk.Concurrency() {
		g.Go(func() error {
			for {
				select {
				case b, ok := <-w.jobs:
					if !ok {
						return nil
					}
					if err := w.write(wctx, b); err != nil {
						cancel()
						return err
					}
				case <-ctx.Done():
					return ctx.Err()
				case <-wctx.Done():
					return wctx.Err()
				}
			}
		})
	}
	return g.Wait()
}

func (w *writer) write(ctx context.Context, b *batch) error {
	res, err := w.bulk.Write(ctx, b.entries)
	if w.bulk.Concurrency() > 1 {
		w.release(b)
	}
	if err != nil {
		return err
	}
	r := w.run
	r.mu.Lock()
	r.stats.Created += int64(res.Created)
	r.stats.Updated += int64(res.Updated)
	r.stats.Unchanged += int64(res.Unchanged)
	r.stats.Skipped += int64(len(res.Skipped))
	r.stats.Duplicates += int64(len(res.Duplicates))
	r.loaded.Add(int64(res.Created + res.Updated + res.Unchanged + len(res.Duplicates)))
	r.mu.Unlock()
	for _, i := range res.Duplicates {
		e := &b.entries[i]
		r.report(Report{Kind: Duplicate, Line: e.Line, Name: e.Display,
			Reason: "an earlier line has the same user; this line wins"})
	}
	for _, i := range res.Skipped {
		e := &b.entries[i]
		r.report(Report{Kind: Skipped, Line: e.Line, Name: e.Display,
			Reason: "exists; left alone (--mode insert)"})
	}
	putBatch(b)
	return nil
}

// finish completes a load that read all of its input.
func (w *writer) finish(ctx context.Context) error {
	r := w.run
	if r.opts.Mode == directory.BulkReplace {
		r.mu.Lock()
		valid := r.stats.Loaded() + r.stats.Skipped
		r.mu.Unlock()
		if valid == 0 {
			return fmt.Errorf("replace: the input holds no valid user; nothing deleted")
		}
	}
	if w.bulk == nil {
		return nil
	}
	deleted, err := w.bulk.Finish(ctx, w.keep)
	r.mu.Lock()
	r.stats.Deleted = deleted
	r.mu.Unlock()
	return err
}
