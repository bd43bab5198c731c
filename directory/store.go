package directory

import (
	"context"
	"errors"
)

// Errors shared by every Store and the Service.
var (
	// ErrNotFound: no such user.
	ErrNotFound = errors.New("user does not exist")
	// ErrExists: the target name of a rename is taken.
	ErrExists = errors.New("user already exists")
	// ErrUnavailable wraps every failure of the storage itself (database
	// down, disk full, timeout). Front ends answer it with -DEAD or
	// "unavailable", never with "no such user".
	ErrUnavailable = errors.New("directory unavailable")
	// ErrBadCredentials: unknown user, wrong password or a refused status;
	// deliberately one error so nobody can probe which names exist.
	ErrBadCredentials = errors.New("password wrong or not a valid user")
)

// IsAnswer reports whether err is one of the directory's own answers (no
// such user, name taken, bad input, a change refused by Service.Modify's
// function) rather than a failure of the storage. Stores pass answers
// through unchanged and wrap everything else in ErrUnavailable.
func IsAnswer(err error) bool {
	var in *InputError
	var r *refusal
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.As(err, &in) || errors.As(err, &r)
}

// UpdateFunc computes a user's new record from the current one (nil when the
// user does not exist yet). It must not modify old, and may be called more
// than once (a store may retry a transaction), so it must have no side
// effects. It returns a record whose Name is the name being updated, or an
// error. Stores keep times to the microsecond.
type UpdateFunc func(old *User) (*User, error)

// Store is a storage back-end. Names passed to it are already normalized.
// Every failure of the storage itself wraps ErrUnavailable. A write returns
// only after it is durable.
type Store interface {
	// Get returns the user, or ErrNotFound.
	Get(ctx context.Context, name string) (*User, error)
	// Update atomically replaces the user with fn's result and returns it.
	Update(ctx context.Context, name string, fn UpdateFunc) (*User, error)
	// Delete removes the user, or returns ErrNotFound.
	Delete(ctx context.Context, name string) error
	// Rename moves a user to a new name, keeping everything else; it sets
	// Name, Display, Updated and Version. ErrNotFound, ErrExists.
	Rename(ctx context.Context, oldName, newName, newDisplay string) error
	// Search calls fn for every user whose name m matches, in name order,
	// without holding all of them in memory. fn's error stops the search
	// and is returned.
	Search(ctx context.Context, m Match, fn func(*User) error) error
	// Count returns the number of users (an estimate is fine for huge stores).
	Count(ctx context.Context) (int64, error)
	// Close releases the store.
	Close() error
}
