// Package watch wraps the store at the bottom of the directory's stack
// (below every cache) and logs its outages once per state change: the
// first failure at ERROR with the error, nothing while it keeps failing
// (the failures are counted), and at recovery one INFO line with how many
// calls failed and for how long. A ten-second database outage under load
// used to write one ERROR line per request; it now writes two lines.
//
// Only calls that reach the store count, so requests the caches answer
// during an outage neither end it nor add to it. A call whose caller gave
// up (its context is done) is not the store's failure either.
package watch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tohost/tohost/directory"
)

// Store is a directory.Store whose outages are logged and reported.
type Store struct {
	next directory.Store
	name string // what the log lines call the store: bolt, postgres
	log  *slog.Logger

	outage Outage
}

// New wraps next; name is what the log lines call it.
func New(next directory.Store, name string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{next: next, name: name, log: log}
}

// Down reports whether the last call that reached the store failed.
func (s *Store) Down() bool { return s.outage.Down() }

// Note records the outcome of a call made to the store outside this
// wrapper (a health probe), as if it had gone through it.
func (s *Store) Note(ctx context.Context, err error) { s.note(ctx, err) }

func (s *Store) note(ctx context.Context, err error) {
	if err != nil && errors.Is(err, directory.ErrUnavailable) {
		if ctx.Err() == nil {
			s.failure(err)
		}
		return
	}
	// Any other answer (a user, "no such user", a refused change) means
	// the store is answering.
	if failed, downFor, ended := s.outage.End(); ended {
		s.log.Info("store available again", "store", s.name, "failed", failed,
			"down_for", downFor.Round(time.Millisecond).String())
	}
}

func (s *Store) failure(err error) {
	if s.outage.Fail() {
		s.log.Error("store unavailable", "store", s.name, "err", err)
	}
}

// Get implements directory.Store.
func (s *Store) Get(ctx context.Context, name string) (*directory.User, error) {
	u, err := s.next.Get(ctx, name)
	s.note(ctx, err)
	return u, err
}

// Update implements directory.Store.
func (s *Store) Update(ctx context.Context, name string, fn directory.UpdateFunc) (*directory.User, error) {
	u, err := s.next.Update(ctx, name, fn)
	s.note(ctx, err)
	return u, err
}

// Delete implements directory.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	err := s.next.Delete(ctx, name)
	s.note(ctx, err)
	return err
}

// Rename implements directory.Store.
func (s *Store) Rename(ctx context.Context, oldName, newName, newDisplay string) error {
	err := s.next.Rename(ctx, oldName, newName, newDisplay)
	s.note(ctx, err)
	return err
}

// Search implements directory.Store.
func (s *Store) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	err := s.next.Search(ctx, m, fn)
	s.note(ctx, err)
	return err
}

// Count implements directory.Store.
func (s *Store) Count(ctx context.Context) (int64, error) {
	n, err := s.next.Count(ctx)
	s.note(ctx, err)
	return n, err
}

// Close implements directory.Store.
func (s *Store) Close() error { return s.next.Close() }
