// Package queue is the backend's outbound mail queue: messages taken by
// submission are spooled durably on disk, then delivered to one relay
// host over SMTP, retried with a back-off, and bounced to their sender
// (an RFC 3464 delivery status notification) when they fail for good.
//
// A message is acknowledged (Enqueue returns) only once its bytes and its
// envelope are synced to disk; see spool.go for the commit protocol.
// Delivery is at least once: a recipient is marked delivered only after
// the relay's 250 to DATA, and the envelope saying so is written after
// that, so a crash in between delivers the message again.
package queue

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Config configures a Queue. The zero value of each field is a working
// default unless it says otherwise.
type Config struct {
	// Dir is the spool directory (required); it is created if missing.
	// One process at a time may use it.
	Dir string
	// Relay is the host:port every message is delivered to (required).
	Relay string
	// Hostname is the name said in EHLO and in bounces (default
	// "localhost").
	Hostname string
	// Retry is the first back-off after a temporary failure; it doubles
	// at each attempt up to MaxRetry. 0: 1 minute, and 1 hour.
	Retry, MaxRetry time.Duration
	// Lifetime is how long a recipient may stay pending; then it fails
	// (RFC 5321 4.5.4.1 suggests 4-5 days). 0: 5 days.
	Lifetime time.Duration
	// Workers is how many messages are delivered at once. 0: 4.
	Workers int
	// Timeout bounds the connection to the relay and each command. 0: 1 minute.
	Timeout time.Duration
	Logger  *slog.Logger
	Metrics *Metrics
}

// Queue is a durable outbound queue. Enqueue may be called before, during
// and after Run.
type Queue struct {
	cfg   Config
	log   *slog.Logger
	spool spool

	mu    sync.Mutex
	items map[string]*item
	wake  chan struct{} // a message is due: the runner looks again
}

// item is a message of the queue; env is read and written by the worker
// that holds busy, or under mu when none does.
type item struct {
	env  *Envelope
	busy bool
}

// Open opens the queue in cfg.Dir: message files that no envelope commits
// are removed, and the queued messages are loaded to be delivered by Run.
func Open(cfg Config) (*Queue, error) {
	return open(cfg, osOps{})
}

func open(cfg Config, fs fileOps) (*Queue, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("queue: no directory")
	case cfg.Relay == "":
		return nil, errors.New("queue: no relay host")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Minute
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = time.Hour
	}
	cfg.MaxRetry = max(cfg.MaxRetry, cfg.Retry)
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 5 * 24 * time.Hour
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, spool: spool{dir: cfg.Dir, fs: fs},
		items: map[string]*item{}, wake: make(chan struct{}, 1)}
	envs, bad, err := q.spool.load()
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	for _, err := range bad {
		q.log.Error("queue: envelope unreadable; left in place", "err", err)
	}
	for _, env := range envs {
		q.items[env.ID] = &item{env: env}
	}
	cfg.Metrics.setQueued(q.Len)
	if len(envs) > 0 {
		q.log.Info("queue: messages resumed", "messages", len(envs))
	}
	return q, nil
}

// NewID returns a new queue id: random, so that ids never repeat across
// restarts, and made of letters a file name may hold.
func NewID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// validID reports whether id is one NewID could have made.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// Enqueue spools the message read from r, from the sender from ("" for
// the null sender) to the recipients to, under id (from NewID, so that
// the caller can name it in the message itself). It returns once the
// message is durable; on error nothing is queued. The runner is woken.
func (q *Queue) Enqueue(id, from string, to []string, r io.Reader) error {
	if !validID(id) {
		return fmt.Errorf("queue: bad id %q", id)
	}
	if len(to) == 0 {
		return errors.New("queue: no recipient")
	}
	n, err := q.spool.writeMessage(id, r)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	env := &Envelope{ID: id, From: from, Created: now, NextAttempt: now}
	for _, a := range to {
		env.Recipients = append(env.Recipients, Recipient{Addr: a, Status: Pending})
	}
	if err := q.spool.writeEnvelope(env); err != nil {
		os.Remove(q.spool.msgPath(id))
		return err
	}
	q.mu.Lock()
	q.items[id] = &item{env: env}
	q.mu.Unlock()
	q.log.Info("queue: queued", "id", id, "from", from, "rcpts", len(to), "bytes", n)
	q.poke()
	return nil
}

// Len is the number of messages queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// poke wakes the runner (or leaves it a wake-up if it is busy).
func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
