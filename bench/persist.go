package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// exclusiveUsers tells whether a mode's sessions lock their user's
// mailbox: a POP3 session holds the maildrop until it ends (RFC 1939), so a
// second session of the same user meanwhile is rightly refused ([IN-USE]),
// and the lock goes only after the reply to QUIT. Such a mode gives each
// connection k users of its own (index - First ≡ k mod Conns) and never
// the same user twice in a row, so the bench never competes with itself
// for a mailbox.
func exclusiveUsers(mode string) bool { return mode == ModePOP3Login }

// runPersistent is the closed loop of the modes that keep one connection
// per client (ldap-search, ldap-bind, smtp-relay): cfg.Conns clients, each
// dialling once and then making requests one after another until
// cfg.Duration or cfg.Count is reached. do makes and checks one request for
// user i; after any error the connection is dropped and dialled again
// (a failed dial counts as a failed request).
func runPersistent[C any](ctx context.Context, cfg Config, dial func(context.Context) (C, error),
	do func(c C, i int, miss bool) error, closeConn func(C)) (Result, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	switch {
	case cfg.Addr == "":
		return Result{}, errors.New("bench: no address")
	case cfg.Users < 1 || cfg.First < 0 || cfg.Conns < 1:
		return Result{}, errors.New("bench: need conns >= 1, users >= 1, first >= 0")
	case !(cfg.Miss >= 0 && cfg.Miss <= 1):
		return Result{}, errors.New("bench: miss must be within [0, 1]")
	case cfg.Duration == 0 && cfg.Count == 0:
		return Result{}, errors.New("bench: need a duration or a count (or both)")
	}
	own := exclusiveUsers(cfg.Mode)
	if own && cfg.Users < 2*cfg.Conns {
		return Result{}, fmt.Errorf("bench: %s needs users >= 2 x conns: each connection has users of its own", cfg.Mode)
	}
	r := &runner{cfg: cfg, base: time.Now()}
	if cfg.Duration > 0 {
		r.end = cfg.Duration
	}
	hists := make([]histogram, cfg.Conns)
	var errs atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	for k := range cfg.Conns {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(k)))
			last := -1
			draw := func() int {
				if !own {
					return cfg.First + rng.IntN(cfg.Users)
				}
				// users j of [0, Users) with j % Conns == k, never the last one again
				share := (cfg.Users - k + cfg.Conns - 1) / cfg.Conns
				for {
					if j := k + cfg.Conns*rng.IntN(share); j != last {
						last = j
						return cfg.First + j
					}
				}
			}
			var c C
			up := false
			defer func() {
				if up {
					closeConn(c)
				}
			}()
			for ctx.Err() == nil && (r.end == 0 || r.now() < r.end) {
				if cfg.Count > 0 && r.issued.Add(1) > int64(cfg.Count) {
					return
				}
				i := draw()
				miss := cfg.Miss > 0 && rng.Float64() < cfg.Miss
				t0 := r.now()
				var err error
				if !up {
					if c, err = dial(ctx); err == nil {
						up = true
					}
				}
				if up {
					err = do(c, i, miss)
				}
				hists[k].record(r.now() - t0)
				if err != nil {
					errs.Add(1)
					r.report(func() string { return fmt.Sprintf("conn %d: %s %s: %v", k, cfg.Mode, Login(i), err) })
					if up {
						closeConn(c)
						up = false
					} else {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := r.now()
	cpu := cpuTime() - cpu0
	var h histogram
	for k := range hists {
		h.merge(&hists[k])
	}
	res := Result{Mode: cfg.Mode, Conns: cfg.Conns, Depth: 1, Elapsed: elapsed, Errors: errs.Load()}
	if err := r.finish(&res, &h, cpu, "requests"); err != nil {
		return res, err
	}
	return res, ctx.Err()
}
