// Command ldapserve serves LDAP over an existing embedded-store data
// directory, for benchmarks and manual tests until `tohost directory` wires
// the LDAP listener. It opens the store like `tohost directory` does (bbolt
// with the in-process cache in front):
//
//	go run ./directory/ldap/internal/ldapserve -data-dir ./tohost-data \
//	    -addr 127.0.0.1:3389 -base dc=example,dc=com -anonymous-read
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/cache"
	"github.com/tohost/tohost/directory/ldap"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
)

func main() {
	dataDir := flag.String("data-dir", "./tohost-data", "embedded store directory")
	addr := flag.String("addr", "127.0.0.1:3389", "LDAP listen address")
	base := flag.String("base", "dc=tohost", "LDAP base DN")
	adminPW := flag.String("admin-password", "", "admin password (cn=admin,<base>); empty: no admin")
	anon := flag.Bool("anonymous-read", false, "let anonymous clients read entries")
	cacheSize := flag.Int("cache-size", 1_000_000, "users kept in the in-process cache")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Error("cpuprofile", "err", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	st, err := bolt.Open(*dataDir)
	if err != nil {
		log.Error("open store", "err", err)
		os.Exit(1)
	}
	defer st.Close()
	svc := directory.NewService(cache.NewLocal(st, cache.LocalOptions{Size: *cacheSize}),
		directory.Config{Scheme: password.SchemeSSHA})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	log.Info("ldap serving", "addr", ln.Addr().String(), "base", *base)
	err = ldap.New(svc, ldap.Config{Base: *base, AdminPassword: *adminPW, AnonymousRead: *anon,
		Logger: log}).Serve(ctx, ln)
	if err != nil {
		log.Error("serve", "err", err)
	}
}
