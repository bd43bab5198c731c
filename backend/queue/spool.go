package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Recipient states.
const (
	Pending   = "pending"
	Delivered = "delivered"
	Failed    = "failed"
)

// Envelope is what the queue knows of a message besides its bytes; it is
// kept as JSON beside the message, and rewritten whole (tmp, fsync,
// rename) after every attempt.
type Envelope struct {
	ID          string      `json:"id"`
	From        string      `json:"from"` // "" is the null sender <>
	Recipients  []Recipient `json:"recipients"`
	Attempts    int         `json:"attempts"`
	Created     time.Time   `json:"created"`
	NextAttempt time.Time   `json:"next_attempt"`
}

// Recipient is one recipient's state.
type Recipient struct {
	Addr   string `json:"addr"`
	Status string `json:"status"`          // Pending, Delivered or Failed
	Reply  string `json:"reply,omitempty"` // the last reply, "550 5.1.1 No such user"
	// Notified: the sender has been told of the failure (a bounce is
	// queued), or there is nobody to tell (null sender).
	Notified bool `json:"notified,omitempty"`
	// Expired: failed because the queue lifetime ended (Reply is the
	// last temporary failure).
	Expired bool `json:"expired,omitempty"`
}

// pending reports whether some recipient is still to be delivered.
func (e *Envelope) pending() bool {
	for _, r := range e.Recipients {
		if r.Status == Pending {
			return true
		}
	}
	return false
}

// unnotified returns the indexes of the failed recipients the sender has
// not been told about.
func (e *Envelope) unnotified() []int {
	var idx []int
	for i, r := range e.Recipients {
		if r.Status == Failed && !r.Notified {
			idx = append(idx, i)
		}
	}
	return idx
}

// fileOps is every file-system call whose order makes a message durable.
// The spool goes through it so that tests can record the order.
type fileOps interface {
	syncFile(f *os.File) error
	syncDir(dir string) error
	rename(oldname, newname string) error
	remove(name string) error
}

type osOps struct{}

func (osOps) syncFile(f *os.File) error { return f.Sync() }

func (osOps) syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (osOps) rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osOps) remove(name string) error             { return os.Remove(name) }

// spool is the queue's directory: for each message <id>.msg (the bytes)
// and <id>.env (the envelope, JSON). The envelope's rename into place is
// the commit point: a message file without an envelope was never
// acknowledged. Only flat files live there, so a Maildir tree scan of the
// parent directory finds nothing to clean in it.
type spool struct {
	dir string
	fs  fileOps
}

const (
	msgExt = ".msg"
	envExt = ".env"
	tmpExt = ".tmp"
)

func (s *spool) msgPath(id string) string { return filepath.Join(s.dir, id+msgExt) }
func (s *spool) envPath(id string) string { return filepath.Join(s.dir, id+envExt) }

// writeMessage copies r into the message file of id and syncs it. On
// error the file is removed.
func (s *spool) writeMessage(id string, r io.Reader) (n int64, err error) {
	path := s.msgPath(id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if n, err = io.Copy(f, r); err != nil {
		return n, err
	}
	return n, s.fs.syncFile(f)
}

// writeEnvelope commits env: written to a temporary name and synced,
// renamed into place, and the directory synced so that the rename (and
// the message file's own entry) survive a crash.
func (s *spool) writeEnvelope(env *Envelope) error {
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.envPath(env.ID) + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = s.fs.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.rename(tmp, s.envPath(env.ID))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return s.fs.syncDir(s.dir)
}

// removeMessage removes a finished message: the envelope first, so that a
// crash in between leaves a message file without envelope, which the next
// start removes.
func (s *spool) removeMessage(id string) error {
	if err := s.fs.remove(s.envPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := s.fs.remove(s.msgPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return s.fs.syncDir(s.dir)
}

// load reads the committed envelopes and removes what no envelope commits
// (message files of a crashed enqueue, temporary envelopes). An envelope
// that cannot be read is left in place and reported in bad.
func (s *spool) load() (envs []*Envelope, bad []error, err error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, e := range ents {
		have[e.Name()] = true
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpExt):
			if err := s.fs.remove(filepath.Join(s.dir, name)); err != nil {
				return nil, nil, err
			}
		case strings.HasSuffix(name, msgExt):
			if !have[strings.TrimSuffix(name, msgExt)+envExt] {
				if err := s.fs.remove(filepath.Join(s.dir, name)); err != nil {
					return nil, nil, err
				}
			}
		case strings.HasSuffix(name, envExt):
			id := strings.TrimSuffix(name, envExt)
			env, err := s.readEnvelope(id)
			if err == nil && !have[id+msgExt] {
				err = errors.New("message file missing")
			}
			if err != nil {
				bad = append(bad, fmt.Errorf("%s: %w", name, err))
				continue
			}
			envs = append(envs, env)
		}
	}
	return envs, bad, s.fs.syncDir(s.dir)
}

func (s *spool) readEnvelope(id string) (*Envelope, error) {
	b, err := os.ReadFile(s.envPath(id))
	if err != nil {
		return nil, err
	}
	env := new(Envelope)
	if err := json.Unmarshal(b, env); err != nil {
		return nil, err
	}
	if env.ID != id {
		return nil, fmt.Errorf("envelope of %q", env.ID)
	}
	return env, env.check()
}

// check refuses an envelope the queue would act on wrongly: one that was
// edited or damaged on disk. An address goes into an SMTP command as it
// is, so a space or a line break in it would change the command.
func (e *Envelope) check() error {
	if len(e.Recipients) == 0 {
		return errors.New("no recipients")
	}
	if bad := strings.IndexFunc(e.From, badAddrRune); bad >= 0 {
		return fmt.Errorf("sender %q: a space or control character", e.From)
	}
	for _, r := range e.Recipients {
		if r.Addr == "" || strings.IndexFunc(r.Addr, badAddrRune) >= 0 {
			return fmt.Errorf("recipient %q: empty, or a space or control character", r.Addr)
		}
		switch r.Status {
		case Pending, Delivered, Failed:
		default:
			return fmt.Errorf("recipient %s: unknown status %q", r.Addr, r.Status)
		}
	}
	return nil
}

func badAddrRune(r rune) bool { return r <= ' ' || r == 0x7f }
