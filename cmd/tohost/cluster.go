package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/protocol/authent"
)

// clusterFlags configure `tohost cluster`.
type clusterFlags struct {
	dataDir, postgres, redis, logLevel string
	portOffset                         int
}

// clusterDaemon is one daemon of the cluster: its subcommand, the flags
// it is given and an address that listens once it runs.
type clusterDaemon struct {
	cmd  *cobra.Command
	args []string
	wait string
}

// demoUser is one of the users the cluster creates on its first start.
type demoUser struct{ name, backend, password string }

// The demo cluster: two backends named by their own loopback addresses
// (Linux routes all of 127.0.0.0/8 to lo), so that users' tohost fields
// tell them apart while each listens on the same ports.
var clusterBackends = []string{"127.0.0.2", "127.0.0.3"}

var clusterUsers = []demoUser{
	{name: "alice@example.com", backend: "127.0.0.2"},
	{name: "bob@example.com", backend: "127.0.0.3"},
}

// clusterMasterUser is the backends' IMAP master login, for tohost user
// move; its password is in --data-dir/master-password.
const clusterMasterUser = "tohost-mover"

// clusterMasterPassword returns the file of the backends' master
// password, made with a new random one (0600) on the first start.
func clusterMasterPassword(dataDir string) (string, error) {
	file := filepath.Join(dataDir, "master-password")
	fh, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return file, nil
	}
	if err != nil {
		return "", err
	}
	_, err = fmt.Fprintln(fh, randomPassword())
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return "", err
	}
	return file, nil
}

// Base ports, --port-offset added to each.
const (
	clusterDirPort = 4020
	clusterIMAP    = 1143
	clusterPOP3    = 1110
	clusterSubm    = 1587
	clusterSMTP    = 1025
	backendIMAP    = 2143
	backendPOP3    = 2110
	backendLMTP    = 2424
	backendSMTP    = 2525
	backendSubm    = 2587
)

func init() { root.AddCommand(newClusterCmd()) }

func newClusterCmd() *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a whole cluster on loopback: a directory, two backends and a proxy, with demo users",
		Long: `cluster runs, in one process, a directory (its store under --data-dir), two
backends (127.0.0.2 and 127.0.0.3, their Maildirs under --data-dir) and a proxy on
127.0.0.1. On the first start it creates demo users with random passwords, kept in
--data-dir/demo-users.txt, and sends each a welcome message through the proxy.
The backends' IMAP master login (for tohost user move) is tohost-mover, its password
made on the first start in --data-dir/master-password.
Ctrl-C stops everything; a later start on the same --data-dir keeps users and mail.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCluster(cmd.Context(), cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "./tohost-cluster", "folder of the cluster's store, Maildirs, demo-users.txt and master-password")
	fl.StringVar(&f.postgres, "postgres", "", "PostgreSQL URL of the directory's store (default: the embedded store)")
	fl.StringVar(&f.redis, "redis", "", "Redis URL of the directory's shared cache (with --postgres)")
	fl.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	fl.IntVar(&f.portOffset, "port-offset", 0, "added to every port the cluster listens on")
	return cmd
}

func (f clusterFlags) addr(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port+f.portOffset))
}

// runCluster starts the daemons in order, each once the one before listens,
// then sets up the demo users; it returns when every daemon has stopped.
func runCluster(ctx context.Context, out io.Writer, f clusterFlags) error {
	if err := within("port-offset", f.portOffset, 0, 60000); err != nil {
		return err
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return err
	}
	dirAddr := f.addr("127.0.0.1", clusterDirPort)
	masterFile, err := clusterMasterPassword(f.dataDir)
	if err != nil {
		return err
	}
	common := []string{"--log-level", f.logLevel, "--http-addr", ""}
	daemons := []clusterDaemon{{newDirectoryCmd(), append([]string{"--data-dir", filepath.Join(f.dataDir, "directory"),
		"--postgres", f.postgres, "--redis", f.redis, "--tcpauth-addr", dirAddr, "--ldap-addr", ""}, common...), dirAddr}}
	// The backends relay their users' outgoing mail to the proxy's SMTP
	// port, which routes local recipients to their backends. The proxy
	// starts after them: until it listens, their queues retry.
	smtpAddr := f.addr("127.0.0.1", clusterSMTP)
	for i, b := range clusterBackends {
		daemons = append(daemons, clusterDaemon{newBackendCmd(), append([]string{"--name", b, "--directory", dirAddr,
			"--mail-dir", filepath.Join(f.dataDir, fmt.Sprintf("backend%d", i+1)),
			"--lmtp-addr", f.addr(b, backendLMTP), "--smtp-addr", f.addr(b, backendSMTP),
			"--imap-addr", f.addr(b, backendIMAP), "--pop3-addr", f.addr(b, backendPOP3),
			"--submission-addr", f.addr(b, backendSubm), "--relay-host", smtpAddr,
			"--master-user", clusterMasterUser, "--master-password-file", masterFile}, common...), f.addr(b, backendLMTP)})
	}
	daemons = append(daemons, clusterDaemon{newProxyCmd(), append([]string{"--directory", dirAddr, "--hostname", "localhost",
		"--imap-addr", f.addr("127.0.0.1", clusterIMAP), "--pop3-addr", f.addr("127.0.0.1", clusterPOP3),
		"--submission-addr", f.addr("127.0.0.1", clusterSubm), "--smtp-addr", smtpAddr,
		"--backend-imap-port", strconv.Itoa(backendIMAP + f.portOffset), "--backend-pop3-port", strconv.Itoa(backendPOP3 + f.portOffset),
		"--backend-smtp-port", strconv.Itoa(backendLMTP + f.portOffset), "--backend-submission-port", strconv.Itoa(backendSubm + f.portOffset)}, common...), smtpAddr})

	// One daemon stopping (or failing) stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(daemons))
	defer wg.Wait()
	for i, d := range daemons {
		if err := d.cmd.ParseFlags(d.args); err != nil {
			return fmt.Errorf("%s: %w", d.cmd.Name(), err)
		}
		d.cmd.SetContext(ctx)
		exited := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(exited)
			defer cancel()
			errs[i] = d.cmd.RunE(d.cmd, nil)
		}()
		if err := waitListening(ctx, d.wait, exited); err != nil {
			cancel()
			wg.Wait()
			return errors.Join(append(errs, fmt.Errorf("%s: %w", d.cmd.Name(), err))...)
		}
	}
	users, err := setupDemoUsers(ctx, f, dirAddr, smtpAddr)
	if err != nil {
		cancel()
		wg.Wait()
		return errors.Join(append(errs, err)...)
	}
	printClusterUsage(out, f, users)
	wg.Wait()
	return errors.Join(errs...)
}

// waitListening dials addr until it answers, the daemon exits or a hang
// guard passes.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	guard := time.After(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("stopped while starting")
		case <-ctx.Done():
			return ctx.Err()
		case <-guard:
			return fmt.Errorf("%s does not listen", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// setupDemoUsers creates the demo users missing from the directory, with
// new passwords kept in demo-users.txt, and sends each new one a welcome
// message through the proxy. Users already there are kept as they are.
func setupDemoUsers(ctx context.Context, f clusterFlags, dirAddr, smtpAddr string) ([]demoUser, error) {
	file := filepath.Join(f.dataDir, "demo-users.txt")
	known := readDemoUsers(file)
	dir, err := authent.NewClient(authent.ClientConfig{Addrs: []string{dirAddr}, Conns: 1, Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	users := make([]demoUser, 0, len(clusterUsers))
	var created []demoUser
	for _, u := range clusterUsers {
		line, _ := authent.LookupLine(u.name)
		r, err := dir.Do(ctx, line)
		if err != nil {
			return nil, err
		}
		exists := r.Status == authent.StatusOK
		if r.Status != authent.StatusOK && r.Status != authent.StatusErr {
			return nil, fmt.Errorf("lookup %s: %w", u.name, r.Err())
		}
		u.password = known[u.name]
		if !exists || u.password == "" {
			if u.password == "" {
				u.password = randomPassword()
			}
			field, _ := authent.ParseFieldArg("tohost=" + u.backend)
			line, err := authent.SetLine(u.name, u.password, []authent.Field{field})
			if err != nil {
				return nil, err
			}
			if r, err := dir.Do(ctx, line); err != nil || r.Err() != nil {
				return nil, fmt.Errorf("creating %s: %w", u.name, errors.Join(err, r.Err()))
			}
		}
		if !exists {
			created = append(created, u)
		}
		users = append(users, u)
	}
	if err := writeDemoUsers(file, users); err != nil {
		return nil, err
	}
	for _, u := range created {
		msg := "From: postmaster@example.com\r\nTo: " + u.name + "\r\nSubject: Welcome to tohost\r\n" +
			"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\n" +
			"Hello " + u.name + ", your mailbox lives on backend " + u.backend + ".\r\n"
		if err := smtp.SendMail(smtpAddr, nil, "postmaster@example.com", []string{u.name}, []byte(msg)); err != nil {
			return nil, fmt.Errorf("welcome message to %s: %w", u.name, err)
		}
	}
	return users, nil
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readDemoUsers reads "user password" lines; a missing file is empty.
func readDemoUsers(file string) map[string]string {
	m := map[string]string{}
	fh, err := os.Open(file)
	if err != nil {
		return m
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 {
			m[fs[0]] = fs[1]
		}
	}
	return m
}

func writeDemoUsers(file string, users []demoUser) error {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "%s %s %s\n", u.name, u.password, u.backend)
	}
	return os.WriteFile(file, []byte(b.String()), 0o600)
}

func printClusterUsage(out io.Writer, f clusterFlags, users []demoUser) {
	fmt.Fprintf(out, `tohost cluster running (Ctrl-C stops it), data in %s
  directory   TCPAuth %s
  backends    %s and %s (IMAP %d, POP3 %d, LMTP %d, SMTP %d, submission %d)
  proxy       IMAP %s  POP3 %s  submission %s  SMTP %s
demo users (also in %s):
`, f.dataDir, f.addr("127.0.0.1", clusterDirPort), clusterBackends[0], clusterBackends[1],
		backendIMAP+f.portOffset, backendPOP3+f.portOffset, backendLMTP+f.portOffset, backendSMTP+f.portOffset, backendSubm+f.portOffset,
		f.addr("127.0.0.1", clusterIMAP), f.addr("127.0.0.1", clusterPOP3), f.addr("127.0.0.1", clusterSubm),
		f.addr("127.0.0.1", clusterSMTP), filepath.Join(f.dataDir, "demo-users.txt"))
	for _, u := range users {
		fmt.Fprintf(out, "  user %s password %s backend %s\n", u.name, u.password, u.backend)
	}
	u := users[0]
	fmt.Fprintf(out, "read %s's welcome message through the proxy:\n  curl 'imap://%s/INBOX;UID=1' -u %s:%s\n",
		u.name, f.addr("127.0.0.1", clusterIMAP), u.name, u.password)
	other := clusterBackends[0]
	if u.backend == other {
		other = clusterBackends[1]
	}
	fmt.Fprintf(out, "move %s's mailbox to the other backend while mail keeps coming:\n"+
		"  tohost user move %s %s --directory %s --backend-imap-port %d --master-user %s --master-password-file %s\n",
		u.name, u.name, other, f.addr("127.0.0.1", clusterDirPort), backendIMAP+f.portOffset,
		clusterMasterUser, filepath.Join(f.dataDir, "master-password"))
	to := users[len(users)-1]
	fmt.Fprintf(out, "send mail as %s to %s through the proxy's submission port:\n"+
		"  printf 'From: %s\\r\\nTo: %s\\r\\nSubject: hello\\r\\n\\r\\nHello!\\r\\n' |\n"+
		"    curl smtp://%s --mail-from %s --mail-rcpt %s -u %s:%s -T -\nready\n",
		u.name, to.name, u.name, to.name, f.addr("127.0.0.1", clusterSubm), u.name, to.name, u.name, u.password)
}
