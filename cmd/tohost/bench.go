package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
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

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Checked load generator for the authent protocol (lookup, check, set), IMAP and POP3 logins and LMTP deliveries, and the echo server to compare with",
		Long: `bench drives a directory over the authent protocol with --conns connections,
each keeping --depth requests in flight, for users of the deterministic benchmark
population (userNNNNNNN@domainDD.example, password pw-NNNNNNN; see package bench).
Every answer is verified; a wrong answer, -DEAD, transport error or timeout is an
error, and any error makes the exit status non-zero. It prints one summary line:

  mode=lookup c=16 depth=1 requests=N errors=0 elapsed_s=.. rps=.. p50_us=.. p99_us=.. p999_us=.. client_cpu=..%

Modes: lookup, check (--miss: that fraction asks for unknown users / wrong
passwords, which must be refused), set (writes users --first .. --first+--users-1
once each: loads a directory and measures durable writes/s; runs until all are
written unless --duration is given), imap-login and pop3-login (--directory is
then an IMAP or POP3 server, a proxy or a backend: each request is a whole session,
connect, greeting, LOGIN or USER/PASS, LOGOUT or QUIT; --miss sends that fraction
of wrong passwords, which must be refused; pop3-login gives each connection users of
its own, since a POP3 session locks its maildrop, and needs --users >= 2 x --conns),
lmtp-deliver (--directory is then a
backend's LMTP address: --conns senders each deliver --size byte messages, one after
another on one connection, to --rcpts users of the population whose tohost is
--tohost; every recipient must get its 250, which a backend gives once the message
is on disk), echo-server (serves the bare line-echo
server on --listen until interrupted: the physical limit to compare with; bench it
with --mode lookup --accept-any), imap-hold (opens --count IMAP sessions at
--directory, --conns at a time, logs each in and keeps them idle for --duration, or
until interrupted with --duration 0; prints "imap-hold: N of M sessions up" to
stderr once they are open, and at the end checks each with a NOOP), imap-server
(serves a minimal IMAP backend on --listen until interrupted: any LOGIN is OK,
NOOP, CAPABILITY, ID, LOGOUT; for holding many idle sessions behind a proxy),
imap-fetch (--conns IMAP sessions at --directory, connection k logged in as user
--first + k%--users, each SELECTs INBOX, which must hold at least --messages (N)
messages, and repeats FETCH 1:N (FLAGS ENVELOPE) and/or FETCH 1:N BODY.PEEK[]
(--fetch envelope, body or both); each must get N FETCH responses and its OK.
It prints one line per command: mode=imap-fetch fetch=envelope .. rps=(fetches/s)
msgs_s=(messages/s) ..; with --fetch both each rate is over the time spent in
that command), ldap-search (--directory is then a directory's LDAP address,
tohost directory --ldap-addr, which must run with --ldap-anonymous-read: each
connection stays open and searches ou=users,--ldap-base for (uid=LOGIN) anonymously;
exactly that user's entry must come back, with --verify-host with its mailHost; --miss
asks for that fraction of unknown users, which must find nothing), ldap-bind (the
same address: each request is a simple bind as uid=LOGIN,ou=users,--ldap-base with
the user's password on a persistent connection; --miss sends that fraction of wrong
passwords, which must get invalidCredentials), smtp-relay (--directory is then an
SMTP port, a proxy's incoming one or a backend's: each request is one transaction
on a persistent connection, MAIL FROM:<bench@example.com>, RCPT TO:<LOGIN>, DATA
with a --size byte message, RSET; each step must get its 250).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if f.procs > 0 {
				runtime.GOMAXPROCS(f.procs)
			}
			if !f.allowRemote {
				if err := bench.CheckLoopback(ctx, f.addr); err != nil {
					return fmt.Errorf("--directory: %w (use --allow-remote)", err)
				}
			}
			if f.mode == "echo-server" {
				addr := f.addr
				if f.listen != "" {
					addr = f.listen
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return fmt.Errorf("--listen: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "tohost bench: echo server on %s, replying %q\n", ln.Addr(), f.reply)
				return bench.ServeEcho(ctx, ln, f.reply)
			}
			if f.mode == bench.ModeIMAPServer {
				addr := f.addr
				if f.listen != "" {
					addr = f.listen
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return fmt.Errorf("--listen: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "tohost bench: IMAP stub on %s\n", ln.Addr())
				return bench.ServeIMAPStub(ctx, ln)
			}
			if f.mode == bench.ModeIMAPHold {
				cfg := bench.Config{Addr: f.addr, Conns: f.conns, Duration: f.duration, Count: f.count,
					Users: f.users, First: f.first, Timeout: f.timeout, Log: cmd.ErrOrStderr()}
				res, err := bench.RunHold(ctx, cfg, func(r bench.HoldResult) {
					fmt.Fprintf(cmd.ErrOrStderr(), "tohost bench: imap-hold: %d of %d sessions up in %.3fs\n", r.Opened, r.Sessions, r.Open.Seconds())
				})
				fmt.Fprintln(cmd.OutOrStdout(), res)
				return err
			}
			if f.mode == bench.ModeIMAPFetch {
				res, err := bench.RunFetches(ctx, bench.Config{Addr: f.addr, Conns: f.conns, Duration: f.duration,
					Count: f.count, Users: f.users, First: f.first, Timeout: f.timeout, Log: cmd.ErrOrStderr(),
					Messages: f.messages, Fetch: f.fetch})
				for _, r := range res {
					fmt.Fprintln(cmd.OutOrStdout(), r)
				}
				return err
			}
			d := f.duration
			_, durationFromEnv := os.LookupEnv("TOHOST_DURATION")
			if f.mode == bench.ModeSet && !cmd.Flags().Changed("duration") && !durationFromEnv {
				d = 0 // set: until every user is written
			}
			run := bench.Run
			switch f.mode {
			case bench.ModeIMAPLogin, bench.ModePOP3Login:
				run = bench.RunLogins
			case bench.ModeLMTPDeliver:
				run = bench.RunDeliveries
			case bench.ModeLDAPSearch, bench.ModeLDAPBind:
				run = bench.RunLDAP
			case bench.ModeSMTPRelay:
				run = bench.RunSMTP
			}
			res, err := run(ctx, bench.Config{
				Addr: f.addr, Mode: f.mode, Conns: f.conns, Depth: f.depth, Duration: d, Count: f.count,
				Users: f.users, First: f.first, Miss: f.miss, Once: f.once, Seed: f.seed, Timeout: f.timeout,
				VerifyHost: f.verifyHost, AcceptAny: f.acceptAny, Secret: f.secret, Log: cmd.ErrOrStderr(),
				MessageBytes: f.size, Rcpts: f.rcpts, ToHost: f.tohost, LDAPBase: f.ldapBase,
			})
			if res.Mode != "" { // the run took place
				fmt.Fprintln(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", bench.ModeLookup, "lookup, check, set, imap-login, pop3-login, lmtp-deliver, imap-hold, imap-fetch, ldap-search, ldap-bind, smtp-relay, echo-server or imap-server")
	fl.StringVar(&f.addr, "directory", "127.0.0.1:4020", "directory address (echo-server: the address to listen on, unless --listen is given)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:4020", "old name of --directory")
	fl.MarkDeprecated("addr", "use --directory")
	fl.StringVar(&f.listen, "listen", "", "echo-server, imap-server: listen address (default: --directory's)")
	fl.IntVarP(&f.conns, "conns", "c", 16, "connections, one goroutine each")
	fl.IntVar(&f.depth, "depth", 1, "requests in flight per connection (pipelining depth; 1 = none)")
	fl.DurationVarP(&f.duration, "duration", "d", 10*time.Second, "run duration (0 = no time limit; set: no limit unless given)")
	fl.IntVarP(&f.count, "count", "n", 0, "total requests (0 = no count limit); imap-hold: the sessions to hold")
	fl.IntVar(&f.users, "users", 100000, "users are drawn from [--first, --first+--users)")
	fl.IntVar(&f.first, "first", 0, "index of the first user")
	fl.BoolVar(&f.once, "once", false, "lookup, check: ask for each user of [--first, --first+--users) once, in order, then stop (a pass over cold caches)")
	fl.Float64Var(&f.miss, "miss", 0, "lookup/check/ldap-search/ldap-bind: fraction of requests for unknown users / wrong passwords (must be refused; run the directory with --login-penalty-max 0, else the right password of a user just missed is refused too)")
	fl.Int64Var(&f.seed, "seed", 1, "random seed (connection k uses the stream seed,k)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "per-request timeout (a watchdog closes the connection)")
	fl.BoolVar(&f.verifyHost, "verify-host", false, "lookup/check: the +OK line must carry the user's tohost field; ldap-search: the entry's mailHost must be it")
	fl.BoolVar(&f.acceptAny, "accept-any", false, "check only +OK/-ERR, not the user name (for the echo server)")
	fl.StringVar(&f.secret, "secret", "", "shared secret sent with `auth` first on every connection")
	fl.StringVar(&f.reply, "reply", "+OK x config 0", "echo-server: the reply to every line (CRLF appended)")
	fl.IntVar(&f.procs, "procs", 0, "GOMAXPROCS of this process (0 = Go default)")
	fl.IntVar(&f.size, "size", 10<<10, "lmtp-deliver, smtp-relay: bytes of each message")
	fl.IntVar(&f.rcpts, "rcpts", 1, "lmtp-deliver: recipients of each message")
	fl.StringVar(&f.tohost, "tohost", "backend1.example", "lmtp-deliver: deliver to the users whose tohost this is (the backend's --name); empty: to every user")
	fl.IntVar(&f.messages, "messages", 1000, "imap-fetch: N of FETCH 1:N (INBOX must hold at least N messages)")
	fl.StringVar(&f.fetch, "fetch", bench.FetchBoth, "imap-fetch: envelope (FETCH 1:N (FLAGS ENVELOPE)), body (FETCH 1:N BODY.PEEK[]) or both, in turn")
	fl.StringVar(&f.ldapBase, "ldap-base", bench.DefaultLDAPBase, "ldap-search, ldap-bind: the directory's LDAP suffix (users are uid=LOGIN,ou=users,BASE)")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "allow a non-loopback --directory")
	return cmd
}
