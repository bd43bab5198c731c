package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tohost/tohost/directory"
)

// Statements run through pgx's statement cache: each connection prepares
// them once, so Get, the hot path, is one round trip of Bind/Execute.
const (
	selectUser = `SELECT ` + columns + ` FROM users WHERE name = $1`
	insertUser = `INSERT INTO users (name, display, domain, password, tohost, fields, created, updated, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (name) DO NOTHING RETURNING ` + columns
	updateUser = `UPDATE users SET display = $2, domain = $3, password = $4, tohost = $5,
		fields = $6, created = $7, updated = $8, version = $9
		WHERE name = $1 RETURNING ` + columns
	deleteUser = `DELETE FROM users WHERE name = $1`
	renameUser = `UPDATE users SET name = $2, display = $3, domain = $4, updated = $5, version = version + 1
		WHERE name = $1`
	countUsers = `SELECT coalesce(sum(n), 0)::bigint FROM user_count`
)

// SQLSTATE codes this store reacts to.
const (
	uniqueViolation      = "23505"
	serializationFailure = "40001"
	deadlockDetected     = "40P01"
)

// maxAttempts bounds the retries of a transaction that lost a race.
const maxAttempts = 10

// errConflict: the user was created by another transaction between our
// read and our insert; the update is retried and then sees it.
var errConflict = errors.New("concurrent create")

// callerError carries an error about the caller's input (fn's own error,
// or a record fn built that cannot be stored) out of the transaction, so
// it is returned unchanged rather than as ErrUnavailable.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }

// Get implements directory.Store.
func (s *Store) Get(ctx context.Context, name string) (*directory.User, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !storable(name) {
		return nil, directory.ErrNotFound // no stored name is like this
	}
	pool := s.readPool(name)
	u, err := scanUser(pool.QueryRow(ctx, selectUser, name))
	if err != nil && !errors.Is(err, directory.ErrNotFound) {
		if pool != s.pool {
			return nil, unavailable(err) // the replica's failure says nothing of the primary
		}
		return nil, s.unavailable(err)
	}
	return u, err
}

// readPool is where a read of name goes: the replica when it is certainly
// as new as the writes this node knows of (see replica), else the primary.
func (s *Store) readPool(name string) *pgxpool.Pool {
	if s.replica != nil && s.replica.usable(name) {
		s.replica.reads.Add(1)
		return s.replica.pool
	}
	return s.pool
}

// ReplicaReads counts the reads the replica served (0 without one).
func (s *Store) ReplicaReads() uint64 {
	if s.replica == nil {
		return 0
	}
	return s.replica.reads.Load()
}

// Written sends reads of name ("*": of every name) to the primary while a
// replica may not have it yet. The store calls it for its own writes; the
// caches call it for the writes of other nodes they learn of. Without a
// replica it does nothing.
func (s *Store) Written(name string) {
	if s.replica != nil {
		s.replica.written(name)
	}
}

// Update implements directory.Store: it locks the row (SELECT FOR UPDATE),
// so concurrent read-modify-writes of one user queue instead of losing
// updates, and returns the record as stored (times in microseconds).
func (s *Store) Update(ctx context.Context, name string, fn directory.UpdateFunc) (*directory.User, error) {
	// Even a failed write may have committed (a timeout after COMMIT).
	defer s.Written(name)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !storable(name) {
		return nil, &directory.InputError{Msg: "user name is not valid UTF-8"}
	}
	var u *directory.User
	err := retry(ctx, func() error {
		var err error
		u, err = s.tryUpdate(ctx, name, fn)
		return err
	})
	if ce := (*callerError)(nil); errors.As(err, &ce) {
		return nil, ce.err
	}
	if err != nil {
		return nil, s.unavailable(err)
	}
	return u, nil
}

func (s *Store) tryUpdate(ctx context.Context, name string, fn directory.UpdateFunc) (u *directory.User, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := scanUser(tx.QueryRow(ctx, selectUser+` FOR UPDATE`, name))
		if err != nil && !errors.Is(err, directory.ErrNotFound) {
			return err
		}
		next, err := fn(old)
		if err == nil {
			err = checkUser(name, next)
		}
		if err != nil {
			return &callerError{err}
		}
		u, err = write(ctx, tx, old == nil, next)
		return err
	})
	return u, err
}

// write stores u. A new user is inserted with ON CONFLICT DO NOTHING, not
// DO UPDATE: when another transaction created the same name after our
// SELECT saw none, fn ran on a stale nil and its result must not overwrite
// the other's; the update is retried instead. An existing user is updated
// in place (its row is locked, so the UPDATE always finds it).
func write(ctx context.Context, tx pgx.Tx, create bool, u *directory.User) (*directory.User, error) {
	q := updateUser
	if create {
		q = insertUser
	}
	stored, err := scanUser(tx.QueryRow(ctx, q, userArgs(u)...))
	if create && errors.Is(err, directory.ErrNotFound) {
		return nil, errConflict
	}
	return stored, err
}

// Delete implements directory.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	defer s.Written(name)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !storable(name) {
		return directory.ErrNotFound
	}
	tag, err := s.pool.Exec(ctx, deleteUser, name)
	if err != nil {
		return s.unavailable(err)
	}
	if tag.RowsAffected() == 0 {
		return directory.ErrNotFound
	}
	return nil
}

// Rename implements directory.Store with one UPDATE of the key, atomic on
// its own: no row is ErrNotFound, a taken name is a unique violation.
func (s *Store) Rename(ctx context.Context, oldName, newName, newDisplay string) error {
	defer s.Written(newName)
	defer s.Written(oldName)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !storable(oldName) {
		return directory.ErrNotFound
	}
	if !storable(newName) || !storable(newDisplay) {
		return &directory.InputError{Msg: "user name is not valid UTF-8"}
	}
	var tag pgconn.CommandTag
	err := retry(ctx, func() error {
		var err error
		tag, err = s.pool.Exec(ctx, renameUser, oldName, newName, newDisplay,
			nullIfEmpty(directory.Domain(newName)), time.Now())
		return err
	})
	switch {
	case hasCode(err, uniqueViolation):
		return directory.ErrExists
	case err != nil:
		return s.unavailable(err)
	case tag.RowsAffected() == 0:
		return directory.ErrNotFound
	}
	return nil
}

// Count implements directory.Store by summing the counter shards the
// triggers keep (see schema/migrations): exact, and no scan of the table.
func (s *Store) Count(ctx context.Context) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, countUsers).Scan(&n); err != nil {
		return 0, s.unavailable(err)
	}
	return n, nil
}

// retry runs op again while PostgreSQL aborts it for a race with another
// transaction: a serialization failure, a deadlock, or errConflict.
func retry(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt == maxAttempts || ctx.Err() != nil || !retryable(err) {
			return err
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, errConflict) ||
		hasCode(err, serializationFailure) || hasCode(err, deadlockDetected)
}

func hasCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
