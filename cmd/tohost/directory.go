package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/tohost/tohost/adminhttp"
	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/backup"
	"github.com/tohost/tohost/directory/ldap"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/tcpauth"
	"github.com/tohost/tohost/internal/daemon"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/internal/penalty"
)

type directoryFlags struct {
	store           storeFlags
	ldap            ldapFlags
	listen          listenFlags
	log             logFlags
	tcpauthAddr     string
	adminAllow      []string
	secret          string
	secretFile      string
	hash            hashFlags
	verifyCacheSize int
	verifyCacheTTL  time.Duration
	hashWorkers     int
	hashQueue       time.Duration
	rehashOnLogin   bool
	penaltyMax      time.Duration
}

func init() { root.AddCommand(newDirectoryCmd()) }

func newDirectoryCmd() *cobra.Command {
	var f directoryFlags
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "Run the user directory (TCPAuth and LDAP) on the embedded store or Postgres+Redis",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDirectory(cmd.Context(), f)
		},
	}
	cmd.AddCommand(newMigrateCmd())
	fl := cmd.Flags()
	f.store.register(fl)
	f.ldap.register(fl)
	f.listen.register(fl, listenUse{httpAddr: "127.0.0.1:4080",
		http: "/metrics, /healthz, /readyz, /debug/pprof, and /backup and /export for --admin-allow clients",
		tls:  "the directory: --tcpauth-addr then speaks TLS only, --ldap-addr offers StartTLS, --ldaps-addr may listen",
		idle: "TCPAuth and LDAP connections"})
	f.log.register(fl)
	fl.StringVar(&f.tcpauthAddr, "tcpauth-addr", "127.0.0.1:4020", "TCPAuth listen address (TLS with --tls-cert/--tls-key)")
	fl.StringSliceVar(&f.adminAllow, "admin-allow", []string{"127.0.0.0/8", "::1/128"}, "networks (CIDR, comma-separated) allowed admin commands (set, del, search, rename) without the secret, and the admin HTTP listener's /backup and /export")
	fl.StringVar(&f.secret, "secret", "", "shared secret: clients must send \"auth <secret>\" first, and may then run admin commands from any network (prefer --secret-file)")
	fl.StringVar(&f.secretFile, "secret-file", "", "file holding the shared secret (the trailing line ending dropped); SIGHUP reads it again")
	f.hash.register(fl, "scheme for new passwords: ARGON2ID, BLF-CRYPT, CRYPT (sha512-crypt), SSHA512, SSHA256, SSHA, ...")
	fl.IntVar(&f.verifyCacheSize, "verify-cache-size", directory.DefaultVerifyCacheSize, "users whose last successful password check is remembered (0: default, -1: off)")
	fl.DurationVar(&f.verifyCacheTTL, "verify-cache-ttl", directory.DefaultVerifyCacheTTL, "how long a successful password check is remembered")
	fl.IntVar(&f.hashWorkers, "hash-workers", 0, "slow password hashes (argon2, bcrypt, sha-crypt) computed at once, shared fairly between client addresses (0: one core less than GOMAXPROCS, at least 1)")
	fl.DurationVar(&f.hashQueue, "hash-queue-timeout", directory.DefaultHashQueue, "longest wait of a check for a hash worker; then it is answered -DEAD (LDAP: unavailable); 0: no limit")
	fl.BoolVar(&f.rehashOnLogin, "rehash-on-login", false, "after a successful check against a weaker scheme or cost than --password-scheme and --argon2-*, store a new hash")
	fl.DurationVar(&f.penaltyMax, "login-penalty-max", 15*time.Second, "longest window after failed checks and binds (by client and user) in which further tries are refused unchecked; 0: off")
	return cmd
}

// runDirectory opens the store and every listener, then serves; a failure
// at any step closes what was opened before it and starts nothing.
// directoryGCPercent is the directory's GOGC unless the environment sets
// one. Its heap is mostly the user cache, which lives long; Go's default
// (100) lets the heap grow to twice that before collecting, which would
// double the memory a million cached users take. Each cycle is cheap (a
// cached user is one object with no pointers to follow), so collecting
// at a quarter more costs no measurable throughput.
const directoryGCPercent = 25

func runDirectory(ctx context.Context, f directoryFlags) error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(directoryGCPercent)
	}
	log, err := f.log.logger()
	if err != nil {
		return err
	}
	cfg, err := f.tcpauthConfig(log)
	if err != nil {
		return err
	}
	tlsCfg, err := f.listen.tlsConfig()
	if err != nil {
		return err
	}
	hasher, err := f.hash.hasher()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	gate, err := f.listen.gate(log, reg)
	if err != nil {
		return err
	}
	d := daemon.New("directory", log, f.listen.shutdownTimeout)
	f.listen.reloadOn(d)
	defer d.Abort()
	store, err := f.store.open(ctx, log, reg)
	if err != nil {
		return err
	}
	d.OnStop(store.Close)
	svc := directory.NewService(store, f.serviceConfig(hasher))

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(usersGauge(svc))
	cfg.Metrics = tcpauth.NewMetrics(reg)
	cfg.Version = version

	ln, err := gate.Listen(f.tcpauthAddr, listen.Options{TLS: tlsCfg, Refusal: tcpauth.Refusal})
	if err != nil {
		return fmt.Errorf("--tcpauth-addr: %w", err)
	}
	if f.penaltyMax > 0 {
		// One for both protocols: a guess over LDAP counts for TCPAuth too.
		cfg.Penalty = penalty.New[string](penalty.Config{Max: f.penaltyMax})
		f.ldap.penalty = cfg.Penalty
	}
	tcp := tcpauth.New(svc, cfg)
	d.Serve("tcpauth", ln, tcp.Serve)
	if f.secretFile != "" {
		d.OnReload("--secret-file", func() error {
			var secret string
			if err := readSecretFile("--secret-file", f.secretFile, &secret); err != nil {
				return err
			}
			return tcp.SetSecret(secret)
		})
	}
	if err := f.ldap.serve(d, gate, svc, tlsCfg, f.listen.idleTimeout, log, ldap.NewMetrics(reg)); err != nil {
		return err
	}
	reg.MustRegister(adminhttp.ReadyCollector(store.deps))
	// /healthz says only that the process answers: a store outage is
	// /readyz's to report, and restarting the process would not end it.
	admin := adminhttp.Options{Ready: store.deps, AdminAllow: cfg.AdminAllow, Admin: map[string]http.Handler{
		"GET /export": backup.Export(store, log),
		"GET /backup": backup.Backup(store.snapshotter(), log),
	}}
	if err := f.listen.serveAdmin(d, log, reg, admin); err != nil {
		return err
	}
	d.Go("store", store.run)
	d.Go("stand-in", func(ctx context.Context) error {
		return svc.KeepStandIn(ctx, 10*time.Minute, func(err error) { log.Warn("stand-in hash not refreshed", "err", err) })
	})
	log.Info("directory store", "store", store.kind, "version", version, "max_conns", gate.MaxConns())
	return d.Run(ctx)
}

// serviceConfig is the Service's part of the flags.
func (f directoryFlags) serviceConfig(h password.Hasher) directory.Config {
	queue := f.hashQueue
	if queue == 0 {
		queue = -1 // the flag's "no limit"
	}
	return directory.Config{Scheme: h.Scheme, Argon2: h.Argon2,
		VerifyCacheSize: f.verifyCacheSize, VerifyCacheTTL: f.verifyCacheTTL,
		HashWorkers: f.hashWorkers, HashQueueTimeout: queue, RehashOnLogin: f.rehashOnLogin}
}

// usersGauge reports the number of users at scrape time.
func usersGauge(svc *directory.Service) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tohost_directory_users", Help: "Users in the directory."},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := svc.Count(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
}

func (f directoryFlags) tcpauthConfig(log *slog.Logger) (tcpauth.Config, error) {
	cfg := tcpauth.Config{IdleTimeout: f.listen.idleTimeout, Logger: log, Secret: f.secret}
	err := errors.Join(f.listen.check(),
		atLeast("verify-cache-size", f.verifyCacheSize, -1),
		atLeast("verify-cache-ttl", f.verifyCacheTTL, 0),
		atLeast("hash-workers", f.hashWorkers, 0),
		atLeast("hash-queue-timeout", f.hashQueue, 0),
		atLeast("login-penalty-max", f.penaltyMax, 0))
	if err != nil {
		return cfg, err
	}
	if cfg.AdminAllow, err = parsePrefixes("--admin-allow", f.adminAllow); err != nil {
		return cfg, err
	}
	if err := readSecretFile("--secret-file", f.secretFile, &cfg.Secret); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// parsePrefixes parses CIDRs; a bare address means just that host.
func parsePrefixes(flag string, list []string) ([]netip.Prefix, error) {
	return listen.ParsePrefixes(flag, list)
}
