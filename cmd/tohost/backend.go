package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/tohost/tohost/adminhttp"
	"github.com/tohost/tohost/backend"
	backendimap "github.com/tohost/tohost/backend/imap"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/backend/pop3"
	"github.com/tohost/tohost/backend/queue"
	"github.com/tohost/tohost/internal/daemon"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
)

type backendFlags struct {
	dir    dirClientFlags
	listen listenFlags
	log    logFlags

	name           string
	mailDir        string
	lmtpAddr       string
	smtpAddr       string
	imapAddr       string
	imapsAddr      string
	pop3Addr       string
	pop3sAddr      string
	acceptDefault  bool
	sharedMailDir  bool
	peers          []string
	lockStale      time.Duration
	maxMessageSize int64
	maxRecipients  int
	hostname       string
	dirConns       int
	loginTrusted   []string
	pop3MarkSeen   bool

	master masterFlags

	// submission and the outbound queue
	submissionAddr string
	relayHost      string
	queueRetry     time.Duration
	queueLifetime  time.Duration
}

// Where the backend listens when no listener flag is given.
const (
	backendDefaultLMTP = "127.0.0.1:2424"
	backendDefaultSMTP = "127.0.0.1:2525"
)

func init() { root.AddCommand(newBackendCmd()) }

func newBackendCmd() *cobra.Command {
	var f backendFlags
	cmd := &cobra.Command{
		Use:   "backend",
		Short: "Run a mail backend: users' Maildirs, mail delivered over LMTP and SMTP",
		Long: `backend keeps the mailboxes of the users whose tohost field names it (--name) in
Maildirs under --mail-dir, and takes their mail over LMTP (from the proxies) and SMTP.
Each recipient is looked up in the directory: another backend's user is refused with
450 (the sender retries and the proxy routes anew), an unknown user with 550. A 250
is given only once the message is on disk and synced. Each listener is off unless
given; with none given, LMTP and SMTP listen on unprivileged loopback ports.
POP3 (--pop3-addr, --pop3s-addr) serves each user's INBOX, locked for the session;
deletions happen at QUIT.

With --shared-mail-dir, several backends (on one host or several, the mail directory
on a networked drive) serve the same users at once: the UID lists and the POP3 lock
are guarded by lock files that work across hosts, and IMAP IDLE notices the other
backends' changes. Each needs its own host name. They serve the users whose tohost
names them or a --peer, and with --accept-default those without one (the proxy's
--default-backend b1,b2,b3 spreads them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBackend(cmd, &f) },
	}
	fl := cmd.Flags()
	f.dir.register(fl, true)
	f.listen.register(fl, listenUse{httpAddr: "127.0.0.1:4082",
		http: "/metrics, /healthz (503 while --mail-dir is missing), /readyz, /debug/pprof",
		tls:  "the backend: implicit TLS on --imaps-addr and --pop3s-addr, STARTTLS (POP3: STLS) on --imap-addr, --pop3-addr, --lmtp-addr, --smtp-addr and --submission-addr",
		idle: "LMTP, SMTP, submission and POP3 connections (IMAP keeps its own: 30 s before login, 35 min after)"})
	f.log.register(fl)
	fl.StringVar(&f.name, "name", "", "this backend's name, as users' tohost fields give it (default: the host name)")
	fl.StringVar(&f.mailDir, "mail-dir", "./tohost-mail", "folder of the users' Maildirs (<domain>/<user>/)")
	fl.StringVar(&f.lmtpAddr, "lmtp-addr", "", "LMTP listen address (off unless given)")
	fl.StringVar(&f.smtpAddr, "smtp-addr", "", "SMTP listen address for incoming mail (off unless given)")
	fl.StringVar(&f.imapAddr, "imap-addr", "", "IMAP listen address (off unless given)")
	fl.StringVar(&f.imapsAddr, "imaps-addr", "", "IMAP listen address, implicit TLS (off unless given)")
	fl.StringVar(&f.pop3Addr, "pop3-addr", "", "POP3 listen address (off unless given)")
	fl.StringVar(&f.pop3sAddr, "pop3s-addr", "", "POP3 listen address, implicit TLS (off unless given)")
	fl.BoolVar(&f.acceptDefault, "accept-default", false, "also take mail for users who have no tohost field")
	fl.BoolVar(&f.sharedMailDir, "shared-mail-dir", false, "other backends use the same --mail-dir at the same time (a networked drive): locks are lock files, IMAP IDLE checks for their changes every second")
	fl.StringSliceVar(&f.peers, "peer", nil, "with --shared-mail-dir: the other backends sharing the mail directory, as tohost fields name them; their users are served here too")
	fl.DurationVar(&f.lockStale, "shared-lock-stale", maildir.DefaultLockStale, "with --shared-mail-dir: a lock file its holder has not refreshed for this long is broken (holders refresh every third of it)")
	fl.Int64Var(&f.maxMessageSize, "max-message-size", 64<<20, "largest message taken over LMTP and SMTP, in bytes")
	fl.IntVar(&f.maxRecipients, "max-recipients", 1000, "recipients of one LMTP or SMTP transaction; more get 452")
	fl.StringVar(&f.hostname, "hostname", "", "name the servers greet with (default: --name)")
	fl.IntVar(&f.dirConns, "directory-conns", 4, "connections to the directory, shared by every login and lookup (pipelined)")
	fl.StringSliceVar(&f.loginTrusted, "login-trusted-networks", nil, "networks (CIDR) of proxies trusted to pass the client's address before login (IMAP ID x-originating-ip, POP3 XCLIENT, as tohost proxy --backend-forward-ip sends them)")
	fl.BoolVar(&f.pop3MarkSeen, "pop3-mark-seen", true, "flag messages retrieved over POP3 \\Seen when the session ends with QUIT")
	f.master.register(fl, "IMAP master login name: AUTHENTICATE PLAIN with a user as authorization identity and these credentials logs in as that user, wherever its mailbox lives (for tohost user move; off unless both master flags are given)",
		"file holding the IMAP master login's password")
	fl.StringVar(&f.submissionAddr, "submission-addr", "", "SMTP submission listen address: AUTH, then mail to anyone, queued under <mail-dir>/.queue (.queue-<name> with --shared-mail-dir) and relayed (off unless given; needs --relay-host)")
	fl.StringVar(&f.relayHost, "relay-host", "", "host:port every queued message is delivered to over SMTP: the site's outbound MTA, or a tohost proxy's SMTP port")
	fl.DurationVar(&f.queueRetry, "queue-retry", time.Minute, "wait before a queued message is tried again; it doubles at each attempt, up to an hour")
	fl.DurationVar(&f.queueLifetime, "queue-lifetime", 5*24*time.Hour, "how long a queued recipient is tried before it fails and the sender gets a bounce")
	return cmd
}

func (f *backendFlags) check() error {
	return errors.Join(f.listen.check(),
		within("directory-conns", f.dirConns, 1, 1024),
		atLeast("max-message-size", int(min(f.maxMessageSize, 1<<40)), 1),
		within("max-recipients", f.maxRecipients, 1, 100_000),
		atLeast("queue-retry", f.queueRetry, time.Second),
		atLeast("queue-lifetime", f.queueLifetime, time.Second),
		atLeast("shared-lock-stale", f.lockStale, 3*time.Second),
		f.checkShared(),
		f.checkSubmission())
}

func (f *backendFlags) checkShared() error {
	if len(f.peers) > 0 && !f.sharedMailDir {
		return errors.New("--peer needs --shared-mail-dir: only backends sharing one mail directory can serve each other's users")
	}
	return nil
}

// queueDir is the outbound spool's directory in the mail directory. One
// process at a time may use a spool: backends sharing the mail directory
// each have their own, named after them (names never start with "." as
// domains do not).
func (f *backendFlags) queueDir() string {
	if f.sharedMailDir {
		return ".queue-" + strings.NewReplacer("/", "_", "\\", "_").Replace(f.name)
	}
	return ".queue"
}

// sharedPoll is how often IMAP IDLE checks its folders for the changes of
// the other backends sharing the mail directory.
const sharedPoll = time.Second

func (f *backendFlags) checkSubmission() error {
	if f.submissionAddr != "" && f.relayHost == "" {
		return errors.New("--submission-addr needs --relay-host: the host:port queued mail is delivered to")
	}
	if f.relayHost != "" {
		if _, _, err := net.SplitHostPort(f.relayHost); err != nil {
			return fmt.Errorf("--relay-host: %w", err)
		}
	}
	return nil
}

// backendRun is what the backend's servers share.
type backendRun struct {
	f     *backendFlags
	d     *daemon.Daemon
	log   *slog.Logger
	reg   *prometheus.Registry
	gate  *listen.Gate
	tls   *tls.Config // --tls-cert/--tls-key; nil without
	store *maildir.Store
	dir   *authent.Client
}

// listen opens a listener for flag (the flag's name, for errors) behind
// the gate; implicit makes it implicit TLS.
func (r *backendRun) listen(flag, addr string, implicit bool, refusal string) (net.Listener, error) {
	opt := listen.Options{Refusal: []byte(refusal)}
	if implicit {
		if r.tls == nil {
			return nil, fmt.Errorf("--%s needs --tls-cert and --tls-key", flag)
		}
		opt.TLS = r.tls
	}
	ln, err := r.gate.Listen(addr, opt)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return ln, nil
}

// backendServers opens the listeners of the backend's servers and adds
// them to the daemon: every server is registered here. It returns false
// when no listener flag was given (then LMTP and SMTP listen on loopback).
func backendServers(r *backendRun) (given bool, err error) {
	f := r.f
	given = f.lmtpAddr != "" || f.smtpAddr != "" || f.imapAddr != "" || f.imapsAddr != "" || f.pop3Addr != "" || f.pop3sAddr != "" ||
		f.submissionAddr != ""
	lmtpAddr, smtpAddr := f.lmtpAddr, f.smtpAddr
	if !given {
		lmtpAddr, smtpAddr = backendDefaultLMTP, backendDefaultSMTP
	}

	// ---- delivery: LMTP and SMTP ----
	if lmtpAddr != "" || smtpAddr != "" {
		dl, err := backend.NewDeliverer(backend.DeliveryConfig{
			Name: f.name, AcceptDefault: f.acceptDefault, Peers: f.peers, Directory: r.dir, Store: r.store,
			MaxMessageBytes: f.maxMessageSize, MaxRecipients: f.maxRecipients,
			IdleTimeout: f.listen.idleTimeout, DrainTimeout: f.listen.shutdownTimeout,
			TLS: r.tls, Hostname: f.hostname, Logger: r.log, Metrics: backend.NewDeliveryMetrics(r.reg),
		})
		if err != nil {
			return given, err
		}
		const refusal = "421 4.7.0 Too many connections, try again later\r\n"
		for _, s := range []struct {
			flag, addr string
			serve      daemon.ServeFunc
		}{{"lmtp-addr", lmtpAddr, dl.ServeLMTP}, {"smtp-addr", smtpAddr, dl.ServeSMTP}} {
			if s.addr == "" {
				continue
			}
			ln, err := r.listen(s.flag, s.addr, false, refusal)
			if err != nil {
				return given, err
			}
			r.d.Serve(s.flag[:4], ln, s.serve)
		}
	}

	// ---- IMAP ----
	if f.imapAddr != "" || f.imapsAddr != "" {
		idTrusted, err := parsePrefixes("--login-trusted-networks", f.loginTrusted)
		if err != nil {
			return given, err
		}
		masterUser, masterPassword, err := f.master.credentials()
		if err != nil {
			return given, err
		}
		var poll time.Duration
		if f.sharedMailDir {
			poll = sharedPoll
		}
		srv := backendimap.New(backendimap.Config{
			Store: r.store, Directory: r.dir, Name: f.name, AcceptDefault: f.acceptDefault, Peers: f.peers, PollInterval: poll,
			MasterUser: masterUser, MasterPassword: masterPassword,
			TLS: r.tls, TrustedProxies: idTrusted, MaxMessageSize: f.maxMessageSize,
			DrainTimeout: f.listen.shutdownTimeout, Logger: r.log, Metrics: backendimap.NewMetrics(r.reg),
		})
		const refusal = "* BYE Too many connections, try again later\r\n"
		for _, l := range []struct {
			flag, addr string
			implicit   bool
		}{{"imap-addr", f.imapAddr, false}, {"imaps-addr", f.imapsAddr, true}} {
			if l.addr == "" {
				continue
			}
			ln, err := r.listen(l.flag, l.addr, l.implicit, refusal)
			if err != nil {
				return given, err
			}
			r.d.Serve(strings.TrimSuffix(l.flag, "-addr"), ln, srv.Serve)
		}
	}

	// ---- POP3 ----
	if f.pop3Addr != "" || f.pop3sAddr != "" {
		trusted, err := parsePrefixes("--login-trusted-networks", f.loginTrusted)
		if err != nil {
			return given, err
		}
		srv := pop3.New(pop3.Config{
			Store: r.store, Directory: r.dir, Name: f.name, Hostname: f.hostname, AcceptDefault: f.acceptDefault, Peers: f.peers,
			TLS: r.tls, TrustedProxies: trusted, MarkSeen: f.pop3MarkSeen,
			IdleTimeout: f.listen.idleTimeout, DrainTimeout: f.listen.shutdownTimeout,
			Logger: r.log, Metrics: pop3.NewMetrics(r.reg),
		})
		for _, s := range []struct {
			flag, addr string
			implicit   bool
		}{{"pop3-addr", f.pop3Addr, false}, {"pop3s-addr", f.pop3sAddr, true}} {
			if s.addr == "" {
				continue
			}
			ln, err := r.listen(s.flag, s.addr, s.implicit, string(pop3.Refusal))
			if err != nil {
				return given, err
			}
			r.d.Serve(strings.TrimSuffix(s.flag, "-addr"), ln, srv.Serve)
		}
	}

	if err := backendSubmission(r); err != nil {
		return given, err
	}
	return given, nil
}

// backendSubmission opens the outbound queue when there is a relay host
// (so that a queue left from an earlier run drains even without
// submission) and the submission listener when asked for.
func backendSubmission(r *backendRun) error {
	f := r.f
	if f.relayHost == "" {
		return nil
	}
	mailDir, err := filepath.Abs(f.mailDir)
	if err != nil {
		return fmt.Errorf("--mail-dir: %w", err)
	}
	hostname := f.hostname
	if hostname == "" {
		hostname = f.name
	}
	q, err := queue.Open(queue.Config{Dir: filepath.Join(mailDir, f.queueDir()), Relay: f.relayHost, Hostname: hostname,
		Retry: f.queueRetry, Lifetime: f.queueLifetime, Logger: r.log, Metrics: queue.NewMetrics(r.reg)})
	if err != nil {
		return err
	}
	r.d.Go("queue", q.Run)
	if f.submissionAddr == "" {
		return nil
	}
	srv, err := backend.NewSubmitter(backend.SubmissionConfig{
		Name: f.name, AcceptDefault: f.acceptDefault, Peers: f.peers, Directory: r.dir, Queue: q,
		MaxMessageBytes: f.maxMessageSize, MaxRecipients: f.maxRecipients,
		IdleTimeout: f.listen.idleTimeout, DrainTimeout: f.listen.shutdownTimeout,
		TLS: r.tls, Hostname: f.hostname, Logger: r.log, Metrics: backend.NewSubmissionMetrics(r.reg),
	})
	if err != nil {
		return err
	}
	ln, err := r.listen("submission-addr", f.submissionAddr, false, "421 4.7.0 Too many connections, try again later\r\n")
	if err != nil {
		return err
	}
	r.d.Serve("submission", ln, srv.Serve)
	return nil
}

func runBackend(cmd *cobra.Command, f *backendFlags) error {
	ctx := cmd.Context()
	log, err := f.log.logger()
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	if f.name == "" {
		if f.name, err = os.Hostname(); err != nil {
			return fmt.Errorf("--name not given and no host name: %w", err)
		}
	}
	tlsCfg, err := f.listen.tlsConfig()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gate, err := f.listen.gate(log, reg)
	if err != nil {
		return err
	}
	// Deliveries get the drain time; the daemon's own deadline is a little
	// longer, so the servers close their connections themselves before it.
	d := daemon.New("backend", log, f.listen.shutdownTimeout+5*time.Second)
	f.listen.reloadOn(d)
	defer d.Abort()

	// The store opens first and closes last, once no server uses it.
	mailDir, err := filepath.Abs(f.mailDir)
	if err != nil {
		return fmt.Errorf("--mail-dir: %w", err)
	}
	store, err := maildir.Open(mailDir, maildir.Options{Shared: f.sharedMailDir, LockStale: f.lockStale})
	if err != nil {
		return fmt.Errorf("--mail-dir: %w", err)
	}
	d.OnStop(store.Close)
	dir, err := f.dir.client(f.dirConns, log)
	if err != nil {
		return err
	}
	d.OnStop(dir.Close)
	f.dir.reloadOn(d, dir)

	r := &backendRun{f: f, d: d, log: log, reg: reg, gate: gate, tls: tlsCfg, store: store, dir: dir}
	given, err := backendServers(r)
	if err != nil {
		return err
	}
	health := func(context.Context) error {
		_, err := os.Stat(mailDir)
		return err
	}
	if err := f.listen.serveAdmin(d, log, reg, adminhttp.Options{Health: health}); err != nil {
		return err
	}
	log.Info("backend", "name", f.name, "mail_dir", mailDir, "accept_default", f.acceptDefault, "shared_mail_dir", f.sharedMailDir, "peers", f.peers)
	if !given {
		log.Info("no listener flags: serving LMTP on " + backendDefaultLMTP + " and SMTP on " + backendDefaultSMTP + " (loopback)")
	}
	return d.Run(ctx)
}
