package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/move"
	"github.com/tohost/tohost/protocol/authent"
)

// userMoveFlags are the flags of `tohost user move`.
type userMoveFlags struct {
	imapPort       int
	master         masterFlags
	defaultBackend string
	settle         time.Duration
	deleteOld      bool
	startTLS       bool
	tlsCA          string
}

func newUserMoveCmd(dir *dirClientFlags) *cobra.Command {
	var f userMoveFlags
	cmd := &cobra.Command{
		Use:   "move <user> <backend>",
		Short: "Move a user's mailbox to another backend while mail keeps arriving, and switch the user's tohost",
		Long: `move copies the user's mailbox from the backend its tohost names to <backend> over IMAP,
logging in to both with the backends' master login, then sets the user's tohost to
<backend> and copies what changed on the old backend in the meantime (new messages,
flag changes, expunges), until a pass finds nothing new. No message is lost or stored
twice while mail keeps arriving: from the switch on, the old backend refuses the user's
mail with 450 and the sender retries through the proxy, which routes to <backend>.

A tohost value (and <backend>) is host or host:port as the proxy reads it: its port,
when it has one, is the one used; else --backend-imap-port. The target mailbox must be
empty. The old mailbox is left as it is unless --delete-old; the user can no longer
reach it there. Once the tohost is switched, an interrupt no longer stops the move.`,
		Example: `  tohost user move alice@example.com backend2.example.com --master-user mover --master-password-file master-password`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUserMove(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), dir, &f, args[0], args[1])
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.imapPort, "backend-imap-port", 143, "backend IMAP port when tohost has none (tohost=\"host:port\" overrides; the proxy's --backend-imap-port)")
	f.master.register(fl, "the backends' IMAP master login name (backend --master-user)", "file holding the master login's password")
	fl.StringVar(&f.defaultBackend, "default-backend", "", "where the mailbox of a user with no tohost is (the proxy's --default-backend; of a list, the first)")
	fl.DurationVar(&f.settle, "settle", 2*time.Second, "wait between the switch and the final pass, for deliveries that were about to store on the old backend")
	fl.BoolVar(&f.deleteOld, "delete-old", false, "expunge from the old backend the messages copied, and delete its emptied folders")
	fl.BoolVar(&f.startTLS, "backend-starttls", false, "use STARTTLS on the IMAP connections to the backends")
	fl.StringVar(&f.tlsCA, "backend-tls-ca", "", "PEM file of the CA(s) the backends' certificates are verified against (default: the system's; implies --backend-starttls)")
	return cmd
}

func runUserMove(ctx context.Context, out, progress io.Writer, dirFlags *dirClientFlags, f *userMoveFlags, user, target string) error {
	if err := within("backend-imap-port", f.imapPort, 1, 65535); err != nil {
		return err
	}
	if err := atLeast("settle", f.settle, 0); err != nil {
		return err
	}
	masterUser, masterPassword, err := f.master.credentials()
	if err != nil {
		return err
	}
	if masterUser == "" {
		return errors.New("--master-user and --master-password-file are needed: the mailboxes are read and written with the backends' master login")
	}
	target = strings.TrimSpace(target)
	newAddr, err := backendIMAPAddr(target, f.imapPort)
	if err != nil {
		return fmt.Errorf("backend %q: %w", target, err)
	}
	dir, err := dirFlags.client(1, nil)
	if err != nil {
		return err
	}
	defer dir.Close()

	u, err := dir.Lookup(ctx, user)
	if err != nil {
		return fmt.Errorf("look up %s: %w", user, err)
	}
	tohost := strings.TrimSpace(u.Get("tohost"))
	old := tohost
	if old == "" {
		// Default backends listed together share the mail: any one
		// holds the mailbox.
		old, _, _ = strings.Cut(f.defaultBackend, ",")
		old = strings.TrimSpace(old)
	}
	if old == "" {
		return fmt.Errorf("%s has no tohost and no --default-backend is given: where is the mailbox?", user)
	}
	if (home.Rule{Name: target}).Here(old) {
		fmt.Fprintf(out, "%s already lives on %s (tohost %q): nothing to move\n", user, target, tohost)
		return nil
	}
	oldAddr, err := backendIMAPAddr(old, f.imapPort)
	if err != nil {
		return fmt.Errorf("%s's tohost %q: %w", user, old, err)
	}
	cfg := move.Config{User: user, Old: oldAddr, New: newAddr, MasterUser: masterUser, MasterPassword: masterPassword,
		Settle: f.settle, DeleteOld: f.deleteOld, Progress: progress,
		Switch: func(ctx context.Context) error { return switchTohost(ctx, dir, user, tohost, target) }}
	if cfg.TLS, err = f.tlsConfig(); err != nil {
		return err
	}
	fmt.Fprintf(progress, "moving %s from %s (IMAP %s) to %s (IMAP %s)\n", user, old, oldAddr, target, newAddr)
	sum, err := move.Run(ctx, cfg)
	if err != nil {
		if sum.SwitchedAt > 0 {
			return fmt.Errorf("%s's tohost is now %s, but the move did not finish (what reached %s after the first pass may be there only): %w",
				user, target, old, err)
		}
		return fmt.Errorf("%s stays on %s: %w", user, old, err)
	}
	fmt.Fprintf(out, "moved %s from %s to %s: %d folders, %d messages (%d after the first pass), %d bytes, "+
		"%d flag changes, %d expunged, %d final passes; switched after %s, took %s\n",
		user, old, target, sum.Folders, sum.Messages, sum.Messages-sum.FirstPass, sum.Bytes,
		sum.FlagsSynced, sum.Expunged, sum.FinalPasses, sum.SwitchedAt.Round(time.Millisecond), sum.Took.Round(time.Millisecond))
	if f.deleteOld {
		fmt.Fprintf(out, "old mailbox on %s: %d messages expunged\n", old, sum.DeletedOld)
	}
	return nil
}

// switchTohost sets user's tohost to target, keeping the password and the
// other fields, unless someone changed the tohost since the move began.
func switchTohost(ctx context.Context, dir *authent.Client, user, was, target string) error {
	u, err := dir.Lookup(ctx, user)
	if err != nil {
		return err
	}
	if now := strings.TrimSpace(u.Get("tohost")); now != was {
		return fmt.Errorf("%s's tohost changed during the move (%q, was %q): not switched", user, now, was)
	}
	return dir.Set(ctx, user, "", []authent.Field{{Label: "tohost", Value: target}})
}

// backendIMAPAddr is where a backend named as a tohost value serves IMAP,
// read as the proxy reads it (proxy/route.go): host, host:port, [v6],
// [v6]:port or a bare IPv6 address; the port, when given, is used for
// every protocol, else port.
func backendIMAPAddr(tohost string, port int) (string, error) {
	host := tohost
	switch {
	case tohost == "":
		return "", errors.New("empty")
	case net.ParseIP(tohost) != nil:
	case strings.HasPrefix(tohost, "[") && strings.HasSuffix(tohost, "]"):
		host = tohost[1 : len(tohost)-1]
	case strings.Contains(tohost, ":"):
		h, ps, err := net.SplitHostPort(tohost)
		if err != nil {
			return "", err
		}
		p, err := strconv.Atoi(ps)
		if err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("bad port %q", ps)
		}
		if h == "" {
			return "", errors.New("no host")
		}
		host, port = h, p
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// tlsConfig is the STARTTLS configuration of the IMAP connections; nil
// without --backend-starttls.
func (f *userMoveFlags) tlsConfig() (*tls.Config, error) {
	if !f.startTLS && f.tlsCA == "" {
		return nil, nil
	}
	cas, err := loadCAs("--backend-tls-ca", f.tlsCA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cas}, nil
}
