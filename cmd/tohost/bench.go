package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/bench"
)

type benchFlags struct {
	mode        string
	addr        string
	conns       int
	depth       int
	duration    time.Duration
	count       int
	users       int
	first       int
	once        bool
	miss        float64
	seed        int64
	timeout     time.Duration
	verifyHost  bool
	acceptAny   bool
	secret      string
	reply       string
	procs       int
	allowRemote bool
	listen      string
	size        int
	rcpts       int
	tohost      string
	messages    int
	fetch       string
	ldapBase    string
}

func init() { root.AddCommand(newBenchCmd()) }

// benchModeEcho is the mode that serves the line-echo server.
const benchModeEcho = "echo-server"

// benchMode is one value of --mode and what runs it.
type benchMode struct {
	name string
	run  func(cmd *cobra.Command, f *benchFlags) error
}

// benchModes are every mode --mode accepts, in the order the help
// describes them; --mode's help lists them from here, and docs_test.go
// checks that the long help describes each.
var benchModes = []benchMode{
	{bench.ModeLookup, benchLoad(bench.Run)},
	{bench.ModeCheck, benchLoad(bench.Run)},
	{bench.ModeSet, benchLoad(bench.Run)},
	{bench.ModeIMAPLogin, benchLoad(bench.RunLogins)},
	{bench.ModePOP3Login, benchLoad(bench.RunLogins)},
	{bench.ModeLMTPDeliver, benchLoad(bench.RunDeliveries)},
	{bench.ModeSMTPRelay, benchLoad(bench.RunSMTP)},
	{bench.ModeLDAPSearch, benchLoad(bench.RunLDAP)},
	{bench.ModeLDAPBind, benchLoad(bench.RunLDAP)},
	{bench.ModeIMAPHold, benchHold},
	{bench.ModeIMAPFetch, benchFetch},
	{benchModeEcho, benchEchoServer},
	{bench.ModeIMAPServer, benchIMAPServer},
}

// benchModeNames lists the modes, comma-separated.
func benchModeNames() string {
	names := make([]string, len(benchModes))
	for i, m := range benchModes {
		names[i] = m.name
	}
	return strings.Join(names, ", ")
}

const benchLong = `bench drives a directory, a proxy or a backend with --conns connections and
checks every answer, for users of the deterministic benchmark population
(userNNNNNNN@domainDD.example, password pw-NNNNNNN; see package bench). A wrong
answer, -DEAD, a transport error or a timeout is an error, and any error makes
the exit status non-zero. It prints one summary line:

  mode=lookup c=16 depth=1 requests=N errors=0 elapsed_s=.. rps=.. p50_us=.. p99_us=.. p999_us=.. client_cpu=..%

--directory is the address measured: a directory's TCPAuth address, unless the
mode says otherwise. It must be a loopback address unless --allow-remote.

Modes (--mode):
  lookup        authent lookup of users, each connection keeping --depth requests
                in flight; --miss: that fraction asks for unknown users, which
                must be refused; --verify-host: each +OK must carry the user's
                tohost; --secret: sent with auth first
  check         authent check of users' passwords, as lookup; --miss: that
                fraction sends wrong passwords, which must be refused
  set           writes users --first .. --first+--users-1 once each, as lookup:
                loads a directory and measures durable writes/s; runs until all
                are written unless --duration is given
  imap-login    --directory is an IMAP server (a proxy or a backend): each
                request is a whole session: connect, greeting, LOGIN, LOGOUT;
                --miss sends that fraction of wrong passwords, which must be
                refused
  pop3-login    as imap-login over POP3 (USER/PASS, QUIT); each connection gets
                users of its own, since a POP3 session locks its maildrop: needs
                --users >= 2 x --conns
  lmtp-deliver  --directory is a backend's LMTP address: --conns senders each
                deliver --size byte messages, one after another on one
                connection, to --rcpts users of the population whose tohost is
                --tohost; every recipient must get its 250, which a backend
                gives once the message is on disk
  smtp-relay    --directory is an SMTP port, a proxy's incoming one or a
                backend's: each request is one transaction on a persistent
                connection, MAIL FROM:<bench@example.com>, RCPT TO:<LOGIN>, DATA
                with a --size byte message, RSET; each step must get its 250
  ldap-search   --directory is a directory's LDAP address (its --ldap-addr, run
                with --ldap-anonymous-read): each connection stays open and
                searches ou=users,--ldap-base for (uid=LOGIN) anonymously;
                exactly that user's entry must come back, with --verify-host
                with its mailHost; --miss asks for that fraction of unknown
                users, which must find nothing
  ldap-bind     the same address: each request is a simple bind as
                uid=LOGIN,ou=users,--ldap-base with the user's password on a
                persistent connection; --miss sends that fraction of wrong
                passwords, which must get invalidCredentials
  imap-hold     opens --count IMAP sessions at --directory, --conns at a time,
                logs each in and keeps them idle for --duration, or until
                interrupted with --duration 0; prints "imap-hold: N of M
                sessions up" to stderr once they are open, and at the end
                checks each with a NOOP
  imap-fetch    --conns IMAP sessions at --directory, connection k logged in as
                user --first + k%--users; each SELECTs INBOX, which must hold at
                least --messages (N) messages, and repeats FETCH 1:N (FLAGS
                ENVELOPE) and/or FETCH 1:N BODY.PEEK[] (--fetch envelope, body
                or both); each must get N FETCH responses and its OK. It prints
                one line per command: mode=imap-fetch fetch=envelope ..
                rps=(fetches/s) msgs_s=(messages/s) ..; with --fetch both each
                rate is over the time spent in that command
  echo-server   serves the bare line-echo server on --listen (else --directory)
                until interrupted, replying --reply to every line: the physical
                limit to compare with; bench it with --mode lookup --accept-any
  imap-server   serves a minimal IMAP backend on --listen (else --directory)
                until interrupted: any LOGIN is OK, NOOP, CAPABILITY, ID,
                LOGOUT; for holding many idle sessions behind a proxy`

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Checked load generator for the directory (authent and LDAP), IMAP, POP3, LMTP and SMTP, and the servers to compare with",
		Long:  benchLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			i := slices.IndexFunc(benchModes, func(m benchMode) bool { return m.name == f.mode })
			if i < 0 {
				return fmt.Errorf("--mode: %q is not one of %s", f.mode, benchModeNames())
			}
			if f.procs > 0 {
				runtime.GOMAXPROCS(f.procs)
			}
			if !f.allowRemote {
				if err := bench.CheckLoopback(cmd.Context(), f.addr); err != nil {
					return fmt.Errorf("--directory: %w (use --allow-remote)", err)
				}
			}
			return benchModes[i].run(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", bench.ModeLookup, benchModeNames()+" (described above)")
	fl.StringVar(&f.addr, "directory", "127.0.0.1:4020", "address measured: a directory's TCPAuth address unless the mode names another (echo-server, imap-server: the address to listen on, unless --listen is given)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:4020", "old name of --directory")
	fl.MarkDeprecated("addr", "use --directory")
	fl.StringVar(&f.listen, "listen", "", "echo-server, imap-server: listen address (default: --directory's)")
	fl.IntVarP(&f.conns, "conns", "c", 16, "connections, one goroutine each")
	fl.IntVar(&f.depth, "depth", 1, "lookup, check, set: requests in flight per connection (pipelining depth; 1 = none)")
	fl.DurationVarP(&f.duration, "duration", "d", 10*time.Second, "run duration (0 = no time limit; set: no limit unless given); imap-hold: how long the sessions are held (0: until interrupted)")
	fl.IntVarP(&f.count, "count", "n", 0, "total requests (0 = no count limit); imap-hold: the sessions to hold")
	fl.IntVar(&f.users, "users", 100000, "users are drawn from [--first, --first+--users)")
	fl.IntVar(&f.first, "first", 0, "index of the first user")
	fl.BoolVar(&f.once, "once", false, "lookup, check: ask for each user of [--first, --first+--users) once, in order, then stop (a pass over cold caches)")
	fl.Float64Var(&f.miss, "miss", 0, "lookup, check, imap-login, pop3-login, ldap-search, ldap-bind: fraction of requests for unknown users / wrong passwords (must be refused; run the directory with --login-penalty-max 0, else the right password of a user just missed is refused too)")
	fl.Int64Var(&f.seed, "seed", 1, "random seed (connection k uses the stream seed,k)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "limit of one request (a watchdog closes the connection)")
	fl.BoolVar(&f.verifyHost, "verify-host", false, "lookup, check: the +OK line must carry the user's tohost field; ldap-search: the entry's mailHost must be it")
	fl.BoolVar(&f.acceptAny, "accept-any", false, "check only +OK/-ERR, not the user name (for the echo server)")
	fl.StringVar(&f.secret, "secret", "", "lookup, check, set: the directory's shared secret (its --secret), sent as \"auth <secret>\" first on each connection")
	fl.StringVar(&f.reply, "reply", "+OK x config 0", "echo-server: the reply to every line (CRLF appended)")
	fl.IntVar(&f.procs, "procs", 0, "GOMAXPROCS of this process (0 = Go default)")
	fl.IntVar(&f.size, "size", 10<<10, "lmtp-deliver, smtp-relay: bytes of each message")
	fl.IntVar(&f.rcpts, "rcpts", 1, "lmtp-deliver: recipients of each message")
	fl.StringVar(&f.tohost, "tohost", "backend1.example", "lmtp-deliver: deliver to the users whose tohost this is (the backend's --name); empty: to every user")
	fl.IntVar(&f.messages, "messages", 1000, "imap-fetch: N of FETCH 1:N (INBOX must hold at least N messages)")
	fl.StringVar(&f.fetch, "fetch", bench.FetchBoth, "imap-fetch: envelope (FETCH 1:N (FLAGS ENVELOPE)), body (FETCH 1:N BODY.PEEK[]) or both, in turn")
	fl.StringVar(&f.ldapBase, "ldap-base", bench.DefaultLDAPBase, "ldap-search, ldap-bind: the directory's --ldap-base (users are uid=LOGIN,ou=users,BASE)")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "allow a non-loopback --directory")
	return cmd
}

// benchLoad runs one of the modes that make requests and print one
// summary line.
func benchLoad(run func(context.Context, bench.Config) (bench.Result, error)) func(*cobra.Command, *benchFlags) error {
	return func(cmd *cobra.Command, f *benchFlags) error {
		d := f.duration
		_, durationFromEnv := os.LookupEnv("TOHOST_DURATION")
		if f.mode == bench.ModeSet && !cmd.Flags().Changed("duration") && !durationFromEnv {
			d = 0 // set: until every user is written
		}
		res, err := run(cmd.Context(), bench.Config{
			Addr: f.addr, Mode: f.mode, Conns: f.conns, Depth: f.depth, Duration: d, Count: f.count,
			Users: f.users, First: f.first, Miss: f.miss, Once: f.once, Seed: f.seed, Timeout: f.timeout,
			VerifyHost: f.verifyHost, AcceptAny: f.acceptAny, Secret: f.secret, Log: cmd.ErrOrStderr(),
			MessageBytes: f.size, Rcpts: f.rcpts, ToHost: f.tohost, LDAPBase: f.ldapBase,
		})
		if res.Mode != "" { // the run took place
			fmt.Fprintln(cmd.OutOrStdout(), res)
		}
		return err
	}
}

func benchHold(cmd *cobra.Command, f *benchFlags) error {
	cfg := bench.Config{Addr: f.addr, Conns: f.conns, Duration: f.duration, Count: f.count,
		Users: f.users, First: f.first, Timeout: f.timeout, Log: cmd.ErrOrStderr()}
	res, err := bench.RunHold(cmd.Context(), cfg, func(r bench.HoldResult) {
		fmt.Fprintf(cmd.ErrOrStderr(), "tohost bench: imap-hold: %d of %d sessions up in %.3fs\n", r.Opened, r.Sessions, r.Open.Seconds())
	})
	fmt.Fprintln(cmd.OutOrStdout(), res)
	return err
}

func benchFetch(cmd *cobra.Command, f *benchFlags) error {
	res, err := bench.RunFetches(cmd.Context(), bench.Config{Addr: f.addr, Conns: f.conns, Duration: f.duration,
		Count: f.count, Users: f.users, First: f.first, Timeout: f.timeout, Log: cmd.ErrOrStderr(),
		Messages: f.messages, Fetch: f.fetch})
	for _, r := range res {
		fmt.Fprintln(cmd.OutOrStdout(), r)
	}
	return err
}

// benchListen opens the listener of a serving mode: --listen, else
// --directory.
func benchListen(f *benchFlags) (net.Listener, error) {
	addr := f.addr
	if f.listen != "" {
		addr = f.listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	return ln, nil
}

func benchEchoServer(cmd *cobra.Command, f *benchFlags) error {
	ln, err := benchListen(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "tohost bench: echo server on %s, replying %q\n", ln.Addr(), f.reply)
	return bench.ServeEcho(cmd.Context(), ln, f.reply)
}

func benchIMAPServer(cmd *cobra.Command, f *benchFlags) error {
	ln, err := benchListen(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "tohost bench: IMAP stub on %s\n", ln.Addr())
	return bench.ServeIMAPStub(cmd.Context(), ln)
}
