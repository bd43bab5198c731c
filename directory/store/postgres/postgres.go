// Package postgres is the directory.Store kept in PostgreSQL: the store for
// clusters, where several stateless directory nodes share one database.
// The tables are created by the migrations of package schema, applied at
// Open.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/schema"
)

// Options configures a Store.
type Options struct {
	// MaxConns bounds the connection pool (0: pgxpool's default, the
	// larger of 4 and the number of CPUs).
	MaxConns int32
	// NoMigrate skips applying the migrations at Open, for databases
	// migrated by an operator (see Migrate).
	NoMigrate bool
	// QueryTimeout bounds each call to the database (default 5s).
	QueryTimeout time.Duration
	// ReadURL, if set, is a streaming replica of the database; user
	// records are read from it when it is certainly new enough (see
	// replica), everything else uses the primary.
	ReadURL string
	// ReadLag is how far behind the primary the replica may be and still
	// be read (default 1s).
	ReadLag time.Duration
}

// connectTimeout bounds dialing when the URL sets no connect_timeout:
// without it a request to an unreachable host waits for the kernel's TCP
// timeout (minutes) instead of answering "unavailable".
const connectTimeout = 5 * time.Second

// defaultQueryTimeout is Options.QueryTimeout's default.
const defaultQueryTimeout = 5 * time.Second

// Store is the PostgreSQL directory.Store. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	replica *replica // nil: every read goes to pool
	timeout time.Duration
}

// bound limits a call's time: a database that hangs (a cut network that
// sends no reset) must turn into "unavailable" well before the mail
// server's own timeout, so it answers -DEAD instead of nothing.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

var _ directory.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or key=value
// string), applies pending migrations unless opts.NoMigrate, and checks
// that the database answers. Failures wrap directory.ErrUnavailable.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := poolConfig(url, opts)
	if err != nil {
		return nil, err
	}
	if !opts.NoMigrate {
		if err := migrate(ctx, cfg.ConnConfig); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, unavailable(err)
	}
	s := &Store{pool: pool, timeout: opts.QueryTimeout}
	if s.timeout <= 0 {
		s.timeout = defaultQueryTimeout
	}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if opts.ReadURL != "" {
		if err := s.openReplica(ctx, opts); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

func poolConfig(url string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	return cfg, nil
}

// openReplica connects to opts.ReadURL and starts watching its lag. The
// replica need not answer yet: until it does, reads go to the primary.
func (s *Store) openReplica(ctx context.Context, opts Options) error {
	cfg, err := poolConfig(opts.ReadURL, opts)
	if err != nil {
		return fmt.Errorf("read replica: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return unavailable(err)
	}
	r := &replica{pool: pool, lag: opts.ReadLag, recent: make(map[string]int64), done: make(chan struct{})}
	if r.lag <= 0 {
		r.lag = time.Second
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = stop
	go r.watch(wctx, s.pool)
	s.replica = r
	return nil
}

// Migrate applies every pending migration of package schema to the
// database at url. Several nodes may call it at once: an advisory lock
// lets one migrate while the others wait.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	return migrate(ctx, cfg)
}

func migrate(ctx context.Context, cfg *pgx.ConnConfig) error {
	// goose runs on database/sql; this handle lives only for the migration.
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if err := runGoose(ctx, db); err != nil {
		return unavailable(fmt.Errorf("migrate: %w", err))
	}
	return nil
}

func runGoose(ctx context.Context, db *sql.DB) error {
	migrations, err := fs.Sub(schema.Migrations, "migrations")
	if err != nil {
		return err
	}
	// Poll the lock every second for up to a minute (goose's default
	// polls every 5 s, slowing every node that starts beside another).
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 60))
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Ping checks that the database answers, for health checks.
func (s *Store) Ping(ctx context.Context) error {
	return unavailable(s.pool.Ping(ctx))
}

// Close closes every connection; later calls fail with ErrUnavailable.
func (s *Store) Close() error {
	if s.replica != nil {
		s.replica.close()
	}
	s.pool.Close()
	return nil
}

// unavailable marks a failure of the database itself. The cause stays in
// the chain (errors.As finds a *pgconn.PgError, errors.Is a context error).
func unavailable(err error) error {
	if err == nil || errors.Is(err, directory.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: postgres: %w", directory.ErrUnavailable, err)
}
