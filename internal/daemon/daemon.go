// Package daemon runs the life of a tohost daemon (directory, proxy,
// backend) the same way for each: every listener is opened before anything
// serves, so a bad address stops the start with nothing running; then the
// servers run together; on SIGINT or SIGTERM (or a server failing) they
// stop accepting and drain within a deadline; the stores close last, once
// nothing uses them. SIGHUP reloads what was registered with OnReload
// (certificates, secrets) and stops nothing.
//
//	d := daemon.New("directory", log, 30*time.Second)
//	defer d.Abort()                      // start-up errors: close what was opened
//	d.OnStop(store.Close)                // closed after every server returned
//	ln, err := gate.Listen(addr, opts)   // every listener first...
//	d.Serve("tcpauth", ln, srv.Serve)
//	return d.Run(ctx)                    // ...then serve
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ServeFunc serves ln until ctx is done, then lets the requests in
// progress finish and returns. It closes ln.
type ServeFunc func(ctx context.Context, ln net.Listener) error

// Daemon is one daemon's servers and the resources they share.
type Daemon struct {
	name    string
	log     *slog.Logger
	timeout time.Duration

	servers []server
	tasks   []task
	closers []func() error
	reloads []task // run on SIGHUP; ctx is Run's
	done    bool   // Run or Abort has been called
}

type server struct {
	name  string
	ln    net.Listener
	serve ServeFunc
}

type task struct {
	name string
	run  func(context.Context) error
}

// DefaultShutdownTimeout is the drain deadline when New is given 0.
const DefaultShutdownTimeout = 30 * time.Second

// New returns a Daemon called name whose servers get shutdownTimeout to
// drain after a stop is asked for.
func New(name string, log *slog.Logger, shutdownTimeout time.Duration) *Daemon {
	if shutdownTimeout <= 0 {
		shutdownTimeout = DefaultShutdownTimeout
	}
	return &Daemon{name: name, log: log, timeout: shutdownTimeout}
}

// Serve adds a server on a listener that is already open.
func (d *Daemon) Serve(name string, ln net.Listener, serve ServeFunc) {
	d.servers = append(d.servers, server{name, ln, serve})
}

// Go adds a background task (a cache subscription, say) that runs beside
// the servers until ctx is done. An error from it stops the daemon; a task
// with nothing (more) to do may return nil.
func (d *Daemon) Go(name string, run func(context.Context) error) {
	d.tasks = append(d.tasks, task{name, run})
}

// OnReload adds something SIGHUP reloads (a certificate, a secret file).
// A reload that fails keeps what it had: it logs why, and the daemon goes
// on.
func (d *Daemon) OnReload(name string, reload func() error) {
	d.reloads = append(d.reloads, task{name, func(context.Context) error { return reload() }})
}

// OnStop adds a resource to close once every server and task has
// returned; the last added is closed first.
func (d *Daemon) OnStop(close func() error) {
	d.closers = append(d.closers, close)
}

// Abort closes the listeners and resources of a daemon that will not run,
// after a start-up error. After Run it does nothing, so it can be deferred.
func (d *Daemon) Abort() {
	if d.done {
		return
	}
	d.done = true
	for _, s := range d.servers {
		s.ln.Close()
	}
	d.closeAll()
}

// Run serves until ctx is done, a stop signal arrives or a server fails,
// then drains. It returns the first server's error, or an error when the
// servers did not finish within the shutdown deadline (the resources are
// then left open: something may still use them, and the process is about
// to exit). A second stop signal during the drain ends it at once.
func (d *Daemon) Run(ctx context.Context) error {
	d.done = true
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// SIGHUP is caught even with nothing to reload: its default action
	// would kill the daemon, and a logrotate or `systemctl reload` must
	// never stop mail.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(d.servers)+len(d.tasks))
	for _, s := range d.servers {
		go func() { results <- result{s.name, s.serve(ctx, s.ln), true} }()
	}
	for _, t := range d.tasks {
		go func() { results <- result{t.name, t.run(ctx), false} }()
	}
	d.log.Info(d.name+" started", d.addrs()...)

	running := len(d.servers) + len(d.tasks)
	var first error
	stop := func(reason string, args ...any) {
		if ctx.Err() == nil {
			d.log.Info(d.name+" stopping", append([]any{"reason", reason, "deadline", d.timeout.String()}, args...)...)
			cancel()
		}
	}
	var deadline <-chan time.Time
	signals := 0
	left := map[string]int{}
	for _, s := range d.servers {
		left[s.name]++
	}
	for _, t := range d.tasks {
		left[t.name]++
	}
	for running > 0 {
		select {
		case r := <-results:
			running--
			left[r.name]--
			if r.err != nil && first == nil {
				first = fmt.Errorf("%s: %w", r.name, r.err)
				stop("failure", "server", r.name, "err", r.err)
			} else if r.server && ctx.Err() == nil {
				stop("finished", "server", r.name)
			}
		case <-ctx.Done():
			stop("context done")
			if deadline == nil {
				deadline = time.After(d.timeout)
			}
		case <-hups:
			d.reload(ctx)
		case sig := <-sigs:
			// Counted here rather than judged by ctx: the caller's
			// context may end on the same signal.
			if signals++; signals > 1 {
				d.log.Warn(d.name+" stopped without draining", "signal", sig.String(), "busy", busy(left))
				return errors.Join(first, fmt.Errorf("stopped by a second %s during the drain", sig))
			}
			stop("signal", "signal", sig.String())
		case <-deadline:
			d.log.Error(d.name+" shutdown deadline passed", "deadline", d.timeout.String(), "busy", busy(left))
			return errors.Join(first, fmt.Errorf("shutdown deadline (%s) passed with %s still busy", d.timeout, busy(left)))
		}
		if ctx.Err() != nil && deadline == nil {
			deadline = time.After(d.timeout)
		}
	}
	if err := d.closeAll(); err != nil && first == nil {
		first = err
	}
	d.log.Info(d.name + " stopped")
	return first
}

// reload runs every OnReload function, one after the other.
func (d *Daemon) reload(ctx context.Context) {
	if len(d.reloads) == 0 {
		d.log.Info(d.name + " got SIGHUP: nothing to reload")
		return
	}
	for _, r := range d.reloads {
		if err := r.run(ctx); err != nil {
			d.log.Error(d.name+" reload failed; keeping the old one", "what", r.name, "err", err)
			continue
		}
		d.log.Info(d.name+" reloaded", "what", r.name)
	}
}

type result struct {
	name   string
	err    error
	server bool // a server, not a task: its return stops the daemon
}

// addrs lists each server's address for the start-up line.
func (d *Daemon) addrs() []any {
	var out []any
	for _, s := range d.servers {
		out = append(out, s.name, s.ln.Addr().String())
	}
	return out
}

// busy names what has not returned yet.
func busy(left map[string]int) string {
	var names []string
	for n, k := range left {
		if k > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// closeAll closes the resources, last added first.
func (d *Daemon) closeAll() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}
