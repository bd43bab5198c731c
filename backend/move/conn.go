package move

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// conn is the master login to one backend, as the user.
type conn struct {
	side     string // "old" or "new", for errors
	c        *imapclient.Client
	selected string // the folder selected, "" when none
	once     sync.Once
}

// dial connects to addr and logs in as the user with the master login.
func (m *mover) dial(ctx context.Context, side, addr string) (*conn, error) {
	opts := &imapclient.Options{Dialer: &net.Dialer{Timeout: m.cfg.DialTimeout}, TLSConfig: m.cfg.TLS}
	var c *imapclient.Client
	var err error
	if m.cfg.TLS != nil {
		c, err = imapclient.DialStartTLS(addr, opts)
	} else {
		c, err = imapclient.DialInsecure(addr, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the %s backend %s: %w", side, addr, err)
	}
	cn := &conn{side: side, c: c}
	stop := context.AfterFunc(ctx, cn.close)
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		cn.close()
		return nil, fmt.Errorf("connect to the %s backend %s: %w", side, addr, err)
	}
	if err := c.Authenticate(sasl.NewPlainClient(m.cfg.User, m.cfg.MasterUser, m.cfg.MasterPassword)); err != nil {
		cn.close()
		return nil, fmt.Errorf("master login as %s on the %s backend %s: %w", m.cfg.User, side, addr, err)
	}
	return cn, nil
}

// close ends the connection (without LOGOUT: it may be in the middle of
// a command).
func (cn *conn) close() {
	cn.once.Do(func() { cn.c.Close() })
}

// folders lists the selectable folders, parents before children.
func (cn *conn) folders() ([]string, error) {
	list, err := cn.c.List("", "*", nil).Collect()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		names = append(names, l.Mailbox)
	}
	slices.SortFunc(names, compareFolders)
	return names, nil
}

// compareFolders orders INBOX first, then by name, so that a parent comes
// before its children.
func compareFolders(a, b string) int {
	ai, bi := strings.EqualFold(a, "INBOX"), strings.EqualFold(b, "INBOX")
	switch {
	case ai && !bi:
		return -1
	case bi && !ai:
		return 1
	}
	return strings.Compare(a, b)
}

// subscriptions lists the subscribed names, whether they exist or not.
func (cn *conn) subscriptions() ([]string, error) {
	list, err := cn.c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list))
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	return names, nil
}

// selectFolder selects name (read-only: EXAMINE) and returns what the
// server said of it.
func (cn *conn) selectFolder(name string, readOnly bool) (*imap.SelectData, error) {
	data, err := cn.c.Select(name, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	if err != nil {
		cn.selected = ""
		return nil, err
	}
	cn.selected = name
	return data, nil
}

// create creates a folder; one that exists already is fine.
func (cn *conn) create(name string) error {
	err := cn.c.Create(name, nil).Wait()
	if imapCode(err) == imap.ResponseCodeAlreadyExists || strings.EqualFold(name, "INBOX") {
		return nil
	}
	return err
}

// imapCode returns the response code of a NO or BAD.
func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// checkEmpty fails unless every folder of the target is empty.
func (m *mover) checkEmpty() error {
	names, err := m.new.folders()
	if err != nil {
		return fmt.Errorf("check the target: list: %w", err)
	}
	for _, name := range names {
		st, err := m.new.c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return fmt.Errorf("check the target: folder %q: status: %w", name, err)
		}
		if st.NumMessages != nil && *st.NumMessages > 0 {
			return fmt.Errorf("%w: folder %q holds %d messages on %s (a move already began or finished? nothing was copied)",
				ErrTargetNotEmpty, name, *st.NumMessages, m.cfg.New)
		}
	}
	return nil
}

// addFolders creates on the target the folders not known yet.
func (m *mover) addFolders(step string, names []string) error {
	for _, name := range names {
		if _, ok := m.folders[name]; ok {
			continue
		}
		if err := m.new.create(name); err != nil {
			return fmt.Errorf("%s: folder %q: create on the new backend: %w", step, name, err)
		}
		m.folders[name] = &folder{name: name, copied: map[imap.UID]copied{}}
		m.order = append(m.order, name)
		m.sum.Folders++
	}
	slices.SortFunc(m.order, compareFolders)
	return nil
}

// subscribe subscribes on the target whatever is subscribed on the old
// side (a subscription to a folder that does not exist is kept where
// the target allows it).
func (m *mover) subscribe(step string) error {
	subs, err := m.old.subscriptions()
	if err != nil {
		return fmt.Errorf("%s: list subscriptions: %w", step, err)
	}
	for _, name := range subs {
		err := m.new.c.Subscribe(name).Wait()
		if err != nil && imapCode(err) != imap.ResponseCodeNonExistent {
			return fmt.Errorf("%s: folder %q: subscribe on the new backend: %w", step, name, err)
		}
	}
	return nil
}
