// Package move copies a user's mailbox from one backend to another over
// IMAP, while mail keeps arriving, and switches the user over in between:
// no message is lost and none is stored twice. It logs in to both
// backends with their master login (backend/imap Config.MasterUser), so
// it works across machines and needs nothing of the users' passwords.
//
// The steps (Run):
//
//  1. The target mailbox must be empty: a rerun after a crash must not
//     copy everything a second time.
//  2. First pass: every folder is created on the target (subscriptions
//     too) and every message appended with its flags and internal date;
//     the old UID of each is mapped to its new one (APPENDUID).
//  3. Switch (Config.Switch): the user's tohost names the target. From
//     then on the old backend refuses the user's logins and deliveries,
//     and a delivery that passed RCPT before the switch is refused by the
//     old backend's last look-up before it stores (backend/deliver.go).
//  4. Settle, then final passes: the messages above the last UID copied
//     are copied, the flags changed on the old side since the copy are
//     changed alike on the target, and the messages gone from the old
//     side are expunged on the target; until a pass finds nothing new.
//
// The settle time covers what is on its way into the old mailbox at the
// switch: a delivery that looked the user up just before it and has not
// linked the message yet.
package move

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"
)

// Config is one move.
type Config struct {
	// User is the user's name in the directory (the master logins'
	// authorization identity).
	User string
	// Old and New are the IMAP addresses (host:port) of the backend the
	// mailbox is on and of the one it goes to.
	Old, New string
	// MasterUser and MasterPassword are the backends' master login.
	MasterUser, MasterPassword string
	// TLS, when set, is used with STARTTLS on both connections.
	TLS *tls.Config
	// Switch points the user's tohost at the new backend (required). It
	// is called once, after the first pass.
	Switch func(ctx context.Context) error
	// Settle is the wait between the switch and the final pass.
	Settle time.Duration
	// DeleteOld expunges from the old mailbox the messages copied, and
	// deletes its folders left empty, once the move is done.
	DeleteOld bool
	// MaxFinalPasses bounds the final passes (0: 20): a source that never
	// stops changing is an error rather than a move without an end.
	MaxFinalPasses int
	// DialTimeout bounds each connection (0: 30 s).
	DialTimeout time.Duration
	// Progress, when set, gets a line per step.
	Progress io.Writer
}

// Summary is what a move did.
type Summary struct {
	Folders     int   // folders of the old mailbox
	Messages    int   // messages copied, by every pass
	FirstPass   int   // messages copied by the first pass
	Bytes       int64 // bytes of the messages copied
	FlagsSynced int   // messages whose flags the final passes changed
	Expunged    int   // messages expunged on the target (gone on the old side)
	FoldersGone int   // folders gone on the old side during the move
	FinalPasses int
	DeletedOld  int           // messages expunged on the old backend (DeleteOld)
	SwitchedAt  time.Duration // from the start
	Took        time.Duration
}

// ErrTargetNotEmpty: the target mailbox holds messages already.
var ErrTargetNotEmpty = errors.New("target mailbox is not empty")

// Run moves cfg.User's mailbox. Once the switch is made, ctx is no
// longer heeded: stopping then would leave on the old backend what
// arrived there after the first pass.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if cfg.User == "" || cfg.Old == "" || cfg.New == "" || cfg.Switch == nil {
		return Summary{}, errors.New("move: Config needs User, Old, New and Switch")
	}
	if cfg.MaxFinalPasses <= 0 {
		cfg.MaxFinalPasses = 20
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	m := &mover{cfg: cfg, start: time.Now(), folders: map[string]*folder{}}
	err := m.run(ctx)
	m.sum.Took = time.Since(m.start)
	return m.sum, err
}

// mover is one move under way.
type mover struct {
	cfg      Config
	start    time.Time
	old, new *conn
	folders  map[string]*folder // by name on the old side
	order    []string           // folder names, parents first
	sum      Summary
}

func (m *mover) logf(format string, args ...any) {
	fmt.Fprintf(m.cfg.Progress, format+"\n", args...)
}

func (m *mover) run(ctx context.Context) error {
	var err error
	if m.old, err = m.dial(ctx, "old", m.cfg.Old); err != nil {
		return err
	}
	defer m.old.close()
	if m.new, err = m.dial(ctx, "new", m.cfg.New); err != nil {
		return err
	}
	defer m.new.close()
	// Before the switch, a cancel closes the connections, which ends any
	// command under way.
	stop := context.AfterFunc(ctx, func() { m.old.close(); m.new.close() })

	if err := m.checkEmpty(); err != nil {
		stop()
		return err
	}
	if err := m.pass("first pass", true); err != nil {
		stop()
		return errors.Join(err, ctx.Err())
	}
	m.sum.FirstPass = m.sum.Messages
	m.logf("first pass: %d folders, %d messages, %d bytes", m.sum.Folders, m.sum.Messages, m.sum.Bytes)
	if err := ctx.Err(); err != nil {
		stop()
		return err
	}
	if !stop() {
		return ctx.Err() // the cancel came first: the connections are closed
	}
	// Not to be cut short: a switch cancelled half way would leave
	// nobody knowing whether it was made.
	if err := m.cfg.Switch(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("switch (check the user's tohost): %w", err)
	}
	m.sum.SwitchedAt = time.Since(m.start)
	m.logf("switched: new mail and logins go to the new backend")

	time.Sleep(m.cfg.Settle)
	if err := m.finalPasses(); err != nil {
		return err
	}
	if m.cfg.DeleteOld {
		if err := m.deleteOld(); err != nil {
			return err
		}
		m.logf("old mailbox: %d messages expunged", m.sum.DeletedOld)
	}
	return nil
}

// finalPasses repeats the delta pass until one copies nothing.
func (m *mover) finalPasses() error {
	for {
		m.sum.FinalPasses++
		before := m.sum.Messages
		step := fmt.Sprintf("final pass %d", m.sum.FinalPasses)
		if err := m.pass(step, m.sum.FinalPasses == 1); err != nil {
			return err
		}
		copied := m.sum.Messages - before
		m.logf("%s: %d messages copied", step, copied)
		if copied == 0 {
			return nil
		}
		if m.sum.FinalPasses >= m.cfg.MaxFinalPasses {
			return fmt.Errorf("%s: the old mailbox still gets messages after %d passes (a session still open there?)", step, m.sum.FinalPasses)
		}
	}
}

// pass brings the target up to the old mailbox: folders (and, with
// subs, subscriptions) and then each folder's messages.
func (m *mover) pass(step string, subs bool) error {
	names, err := m.old.folders()
	if err != nil {
		return fmt.Errorf("%s: list: %w", step, err)
	}
	if err := m.addFolders(step, names); err != nil {
		return err
	}
	if subs {
		if err := m.subscribe(step); err != nil {
			return err
		}
	}
	listed := make(map[string]bool, len(names))
	for _, n := range names {
		listed[n] = true
	}
	for _, name := range m.order {
		f := m.folders[name]
		if f.gone {
			continue
		}
		if !listed[name] {
			if err := m.folderGone(step, f); err != nil {
				return err
			}
			continue
		}
		if err := m.syncFolder(step, f); err != nil {
			return err
		}
	}
	return nil
}
