package directory

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tohost/tohost/directory/password"
)

// Service is the directory as the protocol front ends see it. It validates
// input, hashes and verifies passwords, and keeps the verification cache
// consistent with writes; the Store behind it holds the truth.
type Service struct {
	store  Store
	hasher password.Hasher
	verify *password.VerifyCache
	pool   *password.Pool // slow hashes: verifications, stand-ins, new hashes
	rehash bool           // Config.RehashOnLogin
	now    func() time.Time

	// standIn is the hash a check of an unknown user is verified against
	// (and fails), so that the time of a failed check does not tell
	// whether the name exists, as its single -ERR message does not. At
	// first it is a hash of a random password in the configured scheme;
	// RefreshStandIn then makes it a hash of the cost class most stored
	// users have (an imported directory of {SSHA} users checks unknown
	// names at {SSHA} speed). It is chosen from a sample of the store in
	// name order, never from what clients ask for: a client that could
	// pick it would pick a cheap one.
	standIn     atomic.Pointer[string]
	standInOnce sync.Once
}

// verifyStandIn and verifyStored verify against the stand-in hash and a
// user's stored hash; variables so a test can see them called.
var (
	verifyStandIn = password.Verify
	verifyStored  = password.Verify
)

// Config configures a Service.
type Config struct {
	// Scheme hashes new cleartext passwords (default ARGON2ID), with
	// Argon2's costs (zero fields: password.DefaultArgon2*).
	Scheme password.Scheme
	Argon2 password.Argon2Params
	// VerifyCacheSize and VerifyCacheTTL bound the cache of successful
	// password verifications (defaults 1,000,000 users, an hour, as
	// long as Dovecot's auth cache; a size below 0 disables it).
	VerifyCacheSize int
	VerifyCacheTTL  time.Duration
	// HashWorkers is how many slow hashes run at once (default
	// password.DefaultHashWorkers: a core is left to lookups), shared
	// fairly between client addresses (see WithClient); one that waits
	// longer than HashQueueTimeout (default 2s, below 0 no limit) is
	// answered ErrBusy.
	HashWorkers      int
	HashQueueTimeout time.Duration
	// RehashOnLogin stores a new hash, of Scheme and Argon2, for a user
	// whose password checks right against a weaker stored hash.
	RehashOnLogin bool
}

// Config defaults. With the verification cache's, a user who logs in
// every few minutes pays for one hash an hour.
const (
	DefaultVerifyCacheSize = 1_000_000
	DefaultVerifyCacheTTL  = time.Hour
	DefaultHashQueue       = 2 * time.Second
)

// NewService returns a Service over store.
func NewService(store Store, cfg Config) *Service {
	if cfg.VerifyCacheSize == 0 {
		cfg.VerifyCacheSize = DefaultVerifyCacheSize
	}
	if cfg.VerifyCacheTTL == 0 {
		cfg.VerifyCacheTTL = DefaultVerifyCacheTTL
	}
	switch {
	case cfg.HashQueueTimeout == 0:
		cfg.HashQueueTimeout = DefaultHashQueue
	case cfg.HashQueueTimeout < 0:
		cfg.HashQueueTimeout = 0 // the pool's "no limit"
	}
	s := &Service{
		store:  store,
		hasher: password.Hasher{Scheme: cfg.Scheme, Argon2: cfg.Argon2},
		pool:   password.NewPool(cfg.HashWorkers, cfg.HashQueueTimeout),
		rehash: cfg.RehashOnLogin,
		now:    time.Now,
	}
	if cfg.VerifyCacheSize > 0 {
		s.verify = password.NewVerifyCache(cfg.VerifyCacheSize, cfg.VerifyCacheTTL)
	}
	return s
}

// Store returns the store the service reads and writes.
func (s *Service) Store() Store { return s.store }

// Lookup returns the user called name.
func (s *Service) Lookup(ctx context.Context, name string) (*User, error) {
	key, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	return s.store.Get(ctx, key)
}

// Check verifies name's password and returns the user. Unknown users, wrong
// passwords and refused account states all give ErrBadCredentials, and an
// unknown user costs a verification too (see standIn); a stored
// hash that cannot be read is logged by the caller as an error, and also
// refuses the login. Slow hashes wait their turn in the hash pool, in the
// queue of the client ctx names (WithClient): ErrBusy when that takes too
// long, for known and unknown names alike.
func (s *Service) Check(ctx context.Context, name, pass string) (*User, error) {
	client := ClientOf(ctx)
	u, err := s.Lookup(ctx, name)
	if errors.Is(err, ErrNotFound) {
		if _, err := s.slowVerify(ctx, client, s.standInHash(), pass, verifyStandIn); isQueueErr(ctx, err) {
			return nil, err
		}
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.verifyUser(ctx, client, u, pass)
	if isQueueErr(ctx, err) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: user %s: %v", ErrBadCredentials, u.Name, err)
	}
	if !ok || !u.LoginAllowed() {
		return nil, ErrBadCredentials
	}
	if s.rehash {
		s.rehashLogin(ctx, client, u, pass)
	}
	return u, nil
}

// verifyUser checks pass against u's stored hash, through the cache.
func (s *Service) verifyUser(ctx context.Context, client string, u *User, pass string) (bool, error) {
	return s.verify.VerifyFunc(u.Name, u.Password, pass, func(stored, plain string) (bool, error) {
		return s.slowVerify(ctx, client, stored, plain, verifyStored)
	})
}

// slowVerify runs verify in the hash pool when stored is a slow hash, and
// at once when it costs microseconds (a digest), as lookups do.
func (s *Service) slowVerify(ctx context.Context, client, stored, plain string,
	verify func(stored, plain string) (bool, error)) (ok bool, err error) {
	if !password.IsSlow(stored) {
		return verify(stored, plain)
	}
	if perr := s.pool.Do(ctx, client, func() { ok, err = verify(stored, plain) }); perr != nil {
		return false, perr
	}
	return ok, err
}

// isQueueErr tells a check that was not computed (the pool was busy or the
// client went away) from one whose stored hash is broken.
func isQueueErr(ctx context.Context, err error) bool {
	return err != nil && (errors.Is(err, ErrBusy) || ctx.Err() != nil && errors.Is(err, ctx.Err()))
}

// HashPassword hashes a cleartext password with the configured scheme and
// costs, in the hash pool when the scheme is slow: what a front end that
// writes passwords itself (LDAP's Password Modify) should store.
func (s *Service) HashPassword(ctx context.Context, plain string) (h string, err error) {
	if !s.hasher.Slow() {
		return s.hasher.Hash(plain)
	}
	if perr := s.pool.Do(ctx, ClientOf(ctx), func() { h, err = s.hasher.Hash(plain) }); perr != nil {
		return "", perr
	}
	return h, err
}

// beforeRehash runs between a login's verification and its rehash's
// write; a test makes a concurrent change there.
var beforeRehash = func() {}

// errStaleHash ends a rehash whose user's hash changed since it was
// verified: the change wins.
var errStaleHash = errors.New("password changed since it was verified")

// rehashLogin replaces u's stored hash, which pass just matched, with one
// of the configured scheme and costs if it is weaker. The write goes
// through Modify and only if the stored hash is still the one verified, so
// a password changed meanwhile (on any node) is never overwritten with the
// old one. It is best effort: a busy pool or a failed write leaves the old
// hash, and the next login tries again.
func (s *Service) rehashLogin(ctx context.Context, client string, u *User, pass string) {
	if !s.hasher.NeedsRehash(u.Password) {
		return
	}
	h, err := s.HashPassword(WithClient(ctx, client), pass)
	if err != nil {
		return
	}
	beforeRehash()
	_, err = s.Modify(ctx, u.Name, func(cur *User) error {
		if cur.Password != u.Password {
			return errStaleHash
		}
		cur.Password = h
		return nil
	})
	if err == nil {
		s.verify.Remember(u.Name, h, pass) // the next login need not verify the new hash
	}
}

// standInHash returns the hash an unknown user's check is verified against.
func (s *Service) standInHash() string {
	s.standInOnce.Do(func() {
		if s.standIn.Load() != nil {
			return // RefreshStandIn came first
		}
		b := make([]byte, 16)
		rand.Read(b)
		h, err := s.hasher.Hash(base64.RawStdEncoding.EncodeToString(b))
		if err != nil {
			h = "{SSHA}" // cannot happen for a configured scheme; fails at once
		}
		s.standIn.CompareAndSwap(nil, &h)
	})
	return *s.standIn.Load()
}

// StandInSample is how many users RefreshStandIn looks at.
const StandInSample = 1000

// RefreshStandIn makes the stand-in hash one of the cost class that most
// of the first StandInSample users (in name order) have. With no users it
// leaves it as it is.
func (s *Service) RefreshStandIn(ctx context.Context) error {
	count := map[string]int{}
	first := map[string]string{}
	seen := 0
	err := s.store.Search(ctx, Match{}, func(u *User) error {
		c := password.CostClass(u.Password)
		if _, ok := first[c]; !ok {
			first[c] = u.Password
		}
		count[c]++
		if seen++; seen >= StandInSample {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	best := ""
	for c, n := range count {
		if best == "" || n > count[best] || n == count[best] && c < best {
			best = c
		}
	}
	if best != "" {
		h := first[best] // a stored hash: verifying a guess against it costs what it costs its user
		s.standIn.Store(&h)
	}
	return nil
}

// KeepStandIn refreshes the stand-in hash now and then every interval
// until ctx ends, so it follows the store as users are imported or
// rehashed. A failed refresh keeps the hash it had.
func (s *Service) KeepStandIn(ctx context.Context, every time.Duration, log func(error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.RefreshStandIn(ctx); err != nil && ctx.Err() == nil {
			log(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Set creates the user or updates it. pass "" keeps the current password
// (refused for a new user); a password with a known {SCHEME} prefix is
// stored as given, anything else is hashed with the configured scheme.
// fields are merged with MergeFields. It reports whether the user was new.
func (s *Service) Set(ctx context.Context, name, pass string, fields []Field) (created bool, err error) {
	return s.write(ctx, name, pass, fields, upsert)
}

// Create is Set for a user that must not exist yet: ErrExists otherwise,
// decided in the same transaction as the write, so two concurrent creates
// of one name cannot overwrite each other.
func (s *Service) Create(ctx context.Context, name, pass string, fields []Field) error {
	_, err := s.write(ctx, name, pass, fields, createOnly)
	return err
}

// Update is Set for a user that must exist: ErrNotFound otherwise, decided
// in the same transaction as the write, so a change computed from a user
// that is deleted meanwhile does not bring it back.
func (s *Service) Update(ctx context.Context, name, pass string, fields []Field) error {
	_, err := s.write(ctx, name, pass, fields, updateOnly)
	return err
}

// writeMode says which of Set, Create and Update a write is.
type writeMode uint8

const (
	upsert writeMode = iota
	createOnly
	updateOnly
)

func (s *Service) write(ctx context.Context, name, pass string, fields []Field, mode writeMode) (created bool, err error) {
	key, err := NormalizeName(name)
	if err != nil {
		return false, err
	}
	if len(fields) > MaxFields { // before merging them: that costs len × len
		return false, inputErrorf("too many fields: %d, at most %d", len(fields), MaxFields)
	}
	for _, f := range fields {
		if err := ValidateField(f); err != nil {
			return false, err
		}
	}
	hash, err := s.storedPassword(ctx, pass)
	if err != nil {
		return false, err
	}
	now := s.now()
	_, err = s.store.Update(ctx, key, func(old *User) (*User, error) {
		created = old == nil
		switch {
		case old != nil && mode == createOnly:
			return nil, ErrExists
		case old == nil && mode == updateOnly:
			return nil, ErrNotFound
		}
		prev := old // nil for a new user
		if old == nil {
			if hash == "" {
				return nil, inputErrorf("a new user needs a password, not (NULL)")
			}
			old = &User{Name: key, Display: name, Created: now}
		}
		u := *old
		if hash != "" {
			u.Password = hash
		}
		u.Fields = MergeFields(old.Fields, fields)
		if err := checkGrowth(prev, &u); err != nil {
			return nil, err
		}
		u.Updated = now
		u.Version++
		return &u, nil
	})
	s.forget(key)
	return created, err
}

// Modify changes an existing user: fn is given the user as stored and
// changes it in place, and the result is written in the same transaction
// as the read (Store.Update), so concurrent Modifies of one user compose
// and none is lost, whichever cache the caller read the user through.
//
// fn may be called more than once (a store may retry the transaction),
// each time with a fresh deep copy of the stored user, so it must have no
// side effects; expensive work, such as hashing a new password, belongs
// before the call. An error of fn is returned unchanged and nothing is
// written.
//
// fn changes the password and the fields: the name, how it is written and
// the creation time stay (Rename changes a name), and Updated and Version
// are set as every write sets them. A password fn sets is stored as given,
// so it must be a hash with its {SCHEME} (and, as any hash stored as
// given, hold no control character); changed and new fields must pass
// ValidateField, have a value (an absent field is removed, not empty) and
// a label of their own: an *InputError otherwise. When fn changes nothing,
// nothing is written. ErrNotFound when the user does not exist: Modify
// never creates one. It returns the user as stored after the change.
func (s *Service) Modify(ctx context.Context, name string, fn func(u *User) error) (*User, error) {
	key, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var unchanged *User // set by the last call of the update function
	u, err := s.store.Update(ctx, key, func(old *User) (*User, error) {
		unchanged = nil
		if old == nil {
			return nil, ErrNotFound
		}
		u := old.Clone()
		if err := fn(u); err != nil {
			return nil, &refusal{err}
		}
		u.Name, u.Display, u.Created = old.Name, old.Display, old.Created
		if err := checkModified(old, u); err != nil {
			return nil, err
		}
		if err := checkGrowth(old, u); err != nil {
			return nil, err
		}
		if u.Password == old.Password && slices.Equal(u.Fields, old.Fields) {
			unchanged = old.Clone()
			return nil, errUnchanged
		}
		u.Updated = now
		u.Version = old.Version + 1
		return u, nil
	})
	var r *refusal
	switch {
	case errors.Is(err, errUnchanged):
		return unchanged, nil
	case errors.As(err, &r):
		err = r.err // fn's own error, as it returned it
	}
	s.forget(key)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// checkModified validates what a Modify's fn made of old as u.
func checkModified(old, u *User) error {
	if u.Password != old.Password {
		if !password.HasScheme(u.Password) {
			return inputErrorf("a password is stored as a hash with its {SCHEME}")
		}
		if err := ValidateHash(u.Password); err != nil {
			return err
		}
	}
	for i, f := range u.Fields {
		if j := indexLabel(u.Fields, f.Label); j != i {
			return inputErrorf("field %s given twice", f.Label)
		}
		if j := indexLabel(old.Fields, f.Label); j >= 0 && old.Fields[j].Value == f.Value {
			continue // as stored
		}
		if err := ValidateField(f); err != nil {
			return err
		}
		if f.Value == "" {
			return inputErrorf("empty value for %s", f.Label)
		}
	}
	return nil
}

// refusal carries an error of a Modify's fn out of the store's
// transaction: an answer (IsAnswer), so a store passes it through
// unchanged and it fails only its own write, not a group committed with
// it.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// errUnchanged ends a Modify whose fn changed nothing, without a write.
var errUnchanged error = &refusal{errors.New("unchanged")}

// storedPassword turns a client's password into what is stored.
func (s *Service) storedPassword(ctx context.Context, pass string) (string, error) {
	if pass == "" {
		return "", nil
	}
	keep := password.HasScheme(pass)
	if keep || s.hasher.Scheme == password.SchemePlain { // stored as written
		if err := ValidateHash(pass); err != nil {
			return "", err
		}
	}
	if keep {
		return pass, nil
	}
	if len(pass) > password.MaxPasswordLen {
		return "", inputErrorf("password longer than %d bytes", password.MaxPasswordLen)
	}
	h, err := s.HashPassword(ctx, pass)
	if isQueueErr(ctx, err) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return h, nil
}

// Delete removes the user.
func (s *Service) Delete(ctx context.Context, name string) error {
	key, err := NormalizeName(name)
	if err != nil {
		return err
	}
	err = s.store.Delete(ctx, key)
	s.forget(key)
	return err
}

// Rename gives a user a new name, keeping password and fields.
func (s *Service) Rename(ctx context.Context, oldName, newName string) error {
	oldKey, err := NormalizeName(oldName)
	if err != nil {
		return err
	}
	newKey, err := NormalizeName(newName)
	if err != nil {
		return err
	}
	err = s.store.Rename(ctx, oldKey, newKey, newName)
	s.forget(oldKey)
	s.forget(newKey)
	return err
}

// Search streams the display names of users matching pattern, in name
// order, skipping the first from matches and stopping after max (max < 0:
// no limit). It returns how many names were passed to fn.
func (s *Service) Search(ctx context.Context, pattern string, from, max int, fn func(display string) error) (int, error) {
	if max == 0 {
		return 0, nil
	}
	seen, sent := 0, 0
	err := s.store.Search(ctx, NewMatch(pattern), func(u *User) error {
		seen++
		if seen <= from {
			return nil
		}
		if err := fn(u.Display); err != nil {
			return err
		}
		sent++
		if max > 0 && sent >= max {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return sent, err
}

var errStop = errors.New("stop")

// SearchUsers streams the users m matches, in name order; m.After pages.
// Front ends that return whole records (LDAP) use it.
func (s *Service) SearchUsers(ctx context.Context, m Match, fn func(*User) error) error {
	return s.store.Search(ctx, m, fn)
}

// Count returns the number of users.
func (s *Service) Count(ctx context.Context) (int64, error) { return s.store.Count(ctx) }

func (s *Service) forget(key string) {
	if s.verify != nil {
		s.verify.Forget(key)
	}
}
