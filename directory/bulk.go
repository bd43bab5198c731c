package directory

import (
	"context"
	"time"
)

// Bulk loading: a store that can take many users at once, in large
// transactions, implements BulkStore; directory/importer feeds it.

// BulkMode says what an import does with users that already exist.
type BulkMode int

const (
	// BulkUpsert inserts new users and replaces existing ones (the default).
	BulkUpsert BulkMode = iota
	// BulkInsert inserts new users; existing ones are left alone and reported.
	BulkInsert
	// BulkReplace makes the directory hold exactly the file's users: it
	// upserts them, then deletes every user the load did not write.
	BulkReplace
)

func (m BulkMode) String() string {
	switch m {
	case BulkInsert:
		return "insert"
	case BulkReplace:
		return "replace"
	}
	return "upsert"
}

// ParseBulkMode parses "upsert", "insert" or "replace".
func ParseBulkMode(s string) (BulkMode, error) {
	for _, m := range []BulkMode{BulkUpsert, BulkInsert, BulkReplace} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, &InputError{Msg: "unknown mode " + s + " (upsert, insert or replace)"}
}

// BulkEntry is one valid user, ready to store: the name is normalized, the
// password is in its stored form, fields are valid, non-empty and have
// distinct labels.
type BulkEntry struct {
	Line     int64 // where the record starts in the input, for reports
	Name     string
	Display  string
	Password string
	Fields   []Field
}

// Tohost returns the entry's tohost field ("" if unset).
func (e *BulkEntry) Tohost() string {
	for _, f := range e.Fields {
		if f.Label == LabelTohost {
			return f.Value
		}
	}
	return ""
}

// BulkStore is a Store that loads many users at once, in large
// transactions, without going through Update one user at a time. The
// embedded and the Postgres stores implement it.
type BulkStore interface {
	Store
	// BeginBulk starts a load. Only one load runs on a store at a time;
	// a second one gets an error.
	BeginBulk(ctx context.Context, opts BulkOptions) (Bulk, error)
}

// BulkOptions configure a load.
type BulkOptions struct {
	Mode BulkMode
	// Stamp is the Created (new users) and Updated time of every user the
	// load writes, in whole microseconds. It also marks them: a user whose
	// Updated equals Stamp was written by this load (an earlier line of
	// the same file). Replace mode deletes the users whose Updated is
	// before it and that the load did not have (unchanged users are not
	// rewritten, so a store remembers them otherwise).
	Stamp time.Time
	// Expected estimates how many users the load will write (0: unknown).
	// A store may use it to set its secondary indexes aside and rebuild
	// them at the end, which is much faster for a large load into a small
	// directory.
	Expected int64
}

// Bulk is one running load.
//
// Write may be called by Concurrency() goroutines at once, provided that
// concurrent calls hold disjoint names; each call is atomic (all of its
// entries commit or none).
type Bulk interface {
	// Concurrency is how many Writes may run at once.
	Concurrency() int
	// Write stores a batch of entries, whose names are distinct.
	Write(ctx context.Context, entries []BulkEntry) (BulkResult, error)
	// Finish completes a load that read its whole input. In replace mode
	// it deletes every user the load did not write, except the names in
	// keep (users whose records were rejected: they are not deleted for a
	// typo). It then restores what BeginBulk set aside.
	Finish(ctx context.Context, keep []string) (deleted int64, err error)
	// Close ends the load. Without Finish (an interrupted or failed load)
	// the committed batches stay and nothing is deleted; the store's
	// indexes are restored. ctx bounds that work.
	Close(ctx context.Context) error
}

// BulkResult says what a Write did with each entry. Entries that are in
// none of the lists were Created, Updated or Unchanged.
type BulkResult struct {
	Created, Updated int
	// Unchanged counts existing users whose record equals the entry: a
	// store need not rewrite them (but must remember, in replace mode,
	// that the load had them).
	Unchanged int
	// Skipped holds the indexes of entries whose user existed before the
	// load (insert mode): they were left alone.
	Skipped []int
	// Duplicates holds the indexes of entries whose user an earlier batch
	// of this load wrote: the later line replaced it.
	Duplicates []int
}
