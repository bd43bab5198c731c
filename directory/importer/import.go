// Package importer reads and writes user files (CSV, NWAuth nwauth.txt,
// LDIF) and loads them into a store in bulk.
//
// An import streams its input: a reader goroutine parses records into
// batches, validation workers check them and hash cleartext passwords in
// parallel, a sequencer puts the batches back in file order (reporting
// rejected records and duplicates within a batch), and writers hand each
// batch to the store's Bulk as one transaction. Memory holds a few batches,
// whatever the size of the file.
//
// Every record ends up counted once: created, updated, duplicate (a later
// line of the file has the same user and wins), skipped (insert mode: the
// user existed), rejected, or not a user (LDIF). An interrupted import
// leaves its committed batches in place; running it again gives the same
// directory, because every batch is an idempotent upsert of whole records.
package importer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
)

// Input is the file an import reads.
type Input struct {
	// Name is used in messages and to guess the format ("-": stdin).
	Name string
	// Size is the input's size in bytes (0: unknown), for progress.
	Size int64
	// Open opens the input; a strict import opens it twice.
	Open func() (io.ReadCloser, error)
}

// Options configure an import.
type Options struct {
	// Format of the input; "" guesses it from the name, then the content.
	Format Format
	Mode   directory.BulkMode
	// Scheme hashes cleartext passwords (default password.DefaultScheme),
	// with Argon2's costs (zero fields: the defaults).
	Scheme password.Scheme
	Argon2 password.Argon2Params
	// Strict reads and checks the whole input first, and imports nothing
	// if any record is rejected.
	Strict bool
	// NameAttr is the LDIF attribute that names a user: "uid" (default)
	// or "mail"; an entry without it uses the other one.
	NameAttr string
	// BatchSize is the number of records per transaction (default 20,000).
	BatchSize int
	// Workers validate records and hash passwords (default GOMAXPROCS).
	Workers int
	// Rejects, when set, receives every rejected record as it was read,
	// in the input's format, so the file can be fixed and imported again.
	Rejects io.Writer
	// Report, when set, is called for every rejected, duplicate and
	// skipped record, in file order within a batch. It must be fast.
	Report func(Report)
	// Progress, when set, is called every ProgressEvery (default 250 ms)
	// while the import runs, and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Cleanup bounds restoring the store after an interrupted import
	// (default: not bounded by the import's context).
	Cleanup context.Context
}

// ReportKind says what a Report is about.
type ReportKind int

const (
	// Rejected: the record is not imported (Reason says why).
	Rejected ReportKind = iota
	// Duplicate: an earlier record of the file had the same user; this
	// one replaced it.
	Duplicate
	// Skipped: the user existed and insert mode left it alone.
	Skipped
)

// Report is one record worth telling the operator about.
type Report struct {
	Kind   ReportKind
	Line   int64
	Name   string // as written; "" when unknown
	Reason string
}

func (r Report) String() string {
	if r.Name == "" {
		return fmt.Sprintf("line %d: %s", r.Line, r.Reason)
	}
	return fmt.Sprintf("line %d: user %q: %s", r.Line, r.Name, r.Reason)
}

// Progress is a snapshot of a running import.
type Progress struct {
	Bytes, Size int64 // input bytes read, of Size (0: unknown)
	Read        int64 // records read
	Loaded      int64 // user records stored (see Stats.Loaded)
	Elapsed     time.Duration
	Checking    bool // the dry pass of a strict import
}

// Stats are the counts of an import. Read = Created + Updated + Unchanged
// + Duplicates + Skipped + Rejected + NotUsers.
type Stats struct {
	Format     Format
	Read       int64 // records read
	Created    int64 // new users
	Updated    int64 // existing users replaced
	Unchanged  int64 // existing users whose record was the same
	Duplicates int64 // records a later record of the same user replaced
	Skipped    int64 // existing users left alone (insert mode)
	Rejected   int64
	NotUsers   int64 // LDIF entries that are not users
	Deleted    int64 // users not in the file (replace mode)
	Elapsed    time.Duration
}

// Loaded is the number of valid user records the store took.
func (s Stats) Loaded() int64 { return s.Created + s.Updated + s.Unchanged + s.Duplicates }

// ErrRejected is returned by a strict import that rejected records.
var ErrRejected = errors.New("records rejected; nothing imported (--strict)")

// Import reads in and loads its users into store.
func Import(ctx context.Context, store directory.BulkStore, in Input, opts Options) (Stats, error) {
	if opts.Scheme == "" {
		opts.Scheme = password.DefaultScheme
	}
	if err := (password.Hasher{Scheme: opts.Scheme, Argon2: opts.Argon2}).Validate(); err != nil {
		return Stats{}, err
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 20_000
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 250 * time.Millisecond
	}
	if opts.Cleanup == nil {
		opts.Cleanup = context.WithoutCancel(ctx)
	}
	r := &run{store: store, in: in, opts: opts, start: time.Now()}
	if opts.Strict {
		st, err := r.pass(ctx, true)
		if err != nil || st.Rejected > 0 {
			if err == nil {
				err = ErrRejected
			}
			st.Elapsed = time.Since(r.start)
			return st, err
		}
		r.opts.Rejects = nil // nothing to reject the second time
		r.prelude = false
	}
	st, err := r.pass(ctx, false)
	st.Elapsed = time.Since(r.start)
	return st, err
}

// run is one import.
type run struct {
	store directory.BulkStore
	in    Input
	opts  Options
	start time.Time

	prelude bool // the rejects file has its header (CSV) or version line
	bytes   atomic.Pointer[atomic.Int64]
	read    atomic.Int64
	loaded  atomic.Int64

	mu    sync.Mutex // guards stats
	stats Stats

	reportMu sync.Mutex     // serializes Report calls
	seen     map[string]int // the sequencer's duplicate finder
}

// recordReader is a format's reader: next reads the next record into
// rec, or returns io.EOF.
type recordReader interface {
	next(rec *Record) error
}

// batch is a run of consecutive records. Batches are recycled (see
// getBatch) so that a long import does not allocate and clear megabytes
// per batch.
type batch struct {
	seq     int
	recs    []Record
	end     int64 // input offset after the batch
	entries []directory.BulkEntry
	rejects []rejectedRecord
}

var batches sync.Pool

func getBatch(seq, size int) *batch {
	b, _ := batches.Get().(*batch)
	if b == nil || cap(b.recs) < size {
		b = &batch{recs: make([]Record, 0, size), entries: make([]directory.BulkEntry, 0, size)}
	}
	b.seq, b.end = seq, 0
	b.recs, b.entries, b.rejects = b.recs[:0], b.entries[:0], b.rejects[:0]
	return b
}

// putBatch recycles b once nothing refers to its records or entries.
func putBatch(b *batch) {
	clear(b.recs[:cap(b.recs)]) // drop the strings they hold
	clear(b.entries[:cap(b.entries)])
	clear(b.rejects[:cap(b.rejects)])
	batches.Put(b)
}

type rejectedRecord struct {
	rec    *Record
	reason string
}

func (r *run) pass(ctx context.Context, dry bool) (Stats, error) {
	r.stats = Stats{}
	r.read.Store(0)
	r.loaded.Store(0)
	rc, err := r.in.Open()
	if err != nil {
		return Stats{}, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, maxLine)
	format := r.opts.Format
	if format == "" {
		format = FormatOfName(r.in.Name)
	}
	if format == "" {
		if format, err = sniffFormat(br); err != nil {
			return Stats{}, err
		}
	}
	r.stats.Format = format
	rr, lr, prelude, err := r.reader(format, br)
	if err != nil {
		return r.stats, err
	}
	r.bytes.Store(&lr.offset)

	w := newWriter(r, dry)
	stopProgress := r.progress(dry)
	err = r.pipeline(ctx, rr, lr, w, prelude, dry)
	if err == nil && !dry {
		err = w.finish(ctx)
	}
	if w.bulk != nil {
		if cerr := w.bulk.Close(r.opts.Cleanup); cerr != nil && err == nil {
			err = cerr
		}
	}
	stopProgress()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats, err
}

// reader makes the format's record reader; prelude is what the rejects
// file starts with.
func (r *run) reader(format Format, br *bufio.Reader) (recordReader, *lineReader, func() string, error) {
	switch format {
	case CSV:
		c := newCSVReader(br)
		if err := c.readHeader(); err != nil {
			return nil, nil, nil, err
		}
		return c, c.lr, func() string { return c.header + "\n" }, nil
	case NWAuth:
		n := newNWAuthReader(br)
		return n, n.lr, func() string { return "" }, nil
	case LDIF:
		l := newLDIFReader(br, r.opts.NameAttr)
		return l, l.lr, func() string {
			if l.version != "" {
				return l.version + "\n\n"
			}
			return ""
		}, nil
	}
	return nil, nil, nil, fmt.Errorf("unknown format %q", format)
}

// progress calls opts.Progress periodically until the returned func is
// called, which reports a last time.
func (r *run) progress(dry bool) func() {
	if r.opts.Progress == nil {
		return func() {}
	}
	snap := func() Progress {
		p := Progress{Size: r.in.Size, Read: r.read.Load(), Loaded: r.loaded.Load(),
			Elapsed: time.Since(r.start), Checking: dry}
		if b := r.bytes.Load(); b != nil {
			p.Bytes = b.Load()
		}
		return p
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(r.opts.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.opts.Progress(snap())
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		r.opts.Progress(snap())
	}
}

// pipeline runs reader → validators → sequencer → writers.
func (r *run) pipeline(ctx context.Context, rr recordReader, lr *lineReader, w *writer, prelude func() string, dry bool) error {
	g, ctx := errgroup.WithContext(ctx)
	workers := r.opts.Workers
	// tokens bound the batches between the reader and the sequencer, so
	// a slow batch (expensive hashes) cannot let the others pile up.
	tokens := make(chan struct{}, 2*workers+2)
	raw := make(chan *batch, workers)
	validated := make(chan *batch, workers)

	// The reader runs outside the group: a read from a pipe that has gone
	// quiet cannot be interrupted, and an interrupted import must not wait
	// for more input. Its result comes through readDone; when ctx ends
	// first the group stops without it (and the reader is left to the
	// process's exit).
	readDone := make(chan error, 1)
	go func() {
		readDone <- func() error { // reader
			defer close(raw)
			for seq := 0; ; seq++ {
				b := getBatch(seq, r.opts.BatchSize)
				var err error
				for len(b.recs) < r.opts.BatchSize {
					b.recs = b.recs[:len(b.recs)+1]
					if err = rr.next(&b.recs[len(b.recs)-1]); err != nil {
						b.recs = b.recs[:len(b.recs)-1]
						break
					}
				}
				if err != nil && err != io.EOF {
					return fmt.Errorf("reading %s: %w", r.in.Name, err)
				}
				b.end = lr.offset.Load()
				if len(b.recs) > 0 {
					select {
					case tokens <- struct{}{}:
					case <-ctx.Done():
						return ctx.Err()
					}
					select {
					case raw <- b:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if err == io.EOF {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}()
	}()
	g.Go(func() error {
		select {
		case err := <-readDone:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})

	var vwg sync.WaitGroup
	v := &validator{hasher: password.Hasher{Scheme: r.opts.Scheme, Argon2: r.opts.Argon2}, dry: dry}
	for range workers {
		vwg.Go(func() {
			for b := range raw {
				for i := range b.recs {
					rec := &b.recs[i]
					if rec.NotUser {
						continue
					}
					e, err := v.entry(rec)
					if err != nil {
						b.rejects = append(b.rejects, rejectedRecord{rec: rec, reason: err.Error()})
						continue
					}
					b.entries = append(b.entries, e)
				}
				select {
				case validated <- b:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() {
		vwg.Wait()
		close(validated)
	}()

	g.Go(func() error { // sequencer
		defer w.closeQueue()
		pending := map[int]*batch{}
		next := 0
		for {
			var b *batch
			select {
			case v, ok := <-validated:
				if !ok {
					return ctx.Err()
				}
				b = v
			case <-ctx.Done():
				return ctx.Err()
			}
			pending[b.seq] = b
			for b := pending[next]; b != nil; b = pending[next] {
				delete(pending, next)
				next++
				<-tokens
				if err := r.sequence(ctx, b, w, prelude); err != nil {
					return err
				}
			}
		}
	})
	g.Go(func() error { return w.wait(ctx) })
	err := g.Wait()
	// Unblock the validators after an error; in the background, since
	// after an interrupt the reader may never close raw.
	go func() {
		for range validated {
		}
	}()
	return err
}

// sequence handles one batch in file order: it reports the rejected
// records and the duplicates within the batch, then hands the rest to
// the writers.
func (r *run) sequence(ctx context.Context, b *batch, w *writer, prelude func() string) error {
	r.mu.Lock()
	r.stats.Read += int64(len(b.recs))
	for i := range b.recs {
		if b.recs[i].NotUser {
			r.stats.NotUsers++
		}
	}
	r.stats.Rejected += int64(len(b.rejects))
	r.mu.Unlock()
	r.read.Add(int64(len(b.recs)))

	for _, rj := range b.rejects {
		r.report(Report{Kind: Rejected, Line: rj.rec.Line, Name: rj.rec.Name, Reason: rj.reason})
		if r.opts.Rejects != nil {
			if !r.prelude {
				if _, err := io.WriteString(r.opts.Rejects, prelude()); err != nil {
					return fmt.Errorf("rejects file: %w", err)
				}
				r.prelude = true
			}
			sep := "\n"
			if r.stats.Format == LDIF {
				sep = "\n\n"
			}
			if _, err := io.WriteString(r.opts.Rejects, rj.rec.Raw+sep); err != nil {
				return fmt.Errorf("rejects file: %w", err)
			}
		}
		if name, err := directory.NormalizeName(rj.rec.Name); err == nil && storable(name) {
			w.keep = append(w.keep, name)
		}
	}

	// Within the batch, the later of two records of one user wins.
	entries := b.entries
	if len(entries) > 1 {
		if r.seen == nil {
			r.seen = make(map[string]int, len(entries))
		}
		seen := r.seen
		clear(seen)
		dups := 0
		for i := range entries {
			e := &entries[i]
			if j, ok := seen[e.Name]; ok {
				r.report(Report{Kind: Duplicate, Line: e.Line, Name: e.Display,
					Reason: fmt.Sprintf("duplicate of line %d; this line wins", entries[j].Line)})
				entries[j].Name = "" // superseded
				dups++
			}
			seen[e.Name] = i
		}
		if dups > 0 {
			kept := entries[:0]
			for _, e := range entries {
				if e.Name != "" {
					kept = append(kept, e)
				}
			}
			entries = kept
			r.mu.Lock()
			r.stats.Duplicates += int64(dups)
			r.mu.Unlock()
		}
	}
	b.entries = entries
	return w.queue(ctx, b)
}

func (r *run) report(rep Report) {
	if r.opts.Report != nil {
		r.reportMu.Lock()
		r.opts.Report(rep)
		r.reportMu.Unlock()
	}
}
