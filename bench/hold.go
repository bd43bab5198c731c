package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ModeIMAPHold opens many IMAP sessions, logs each in and keeps them idle
// (RunHold): the load for measuring what an idle session costs a proxy.
const ModeIMAPHold = "imap-hold"

// HoldResult is the outcome of RunHold.
type HoldResult struct {
	Sessions int           // asked for (Config.Count)
	Opened   int           // logged in
	Alive    int           // still answering NOOP after the hold
	Errors   int64         // sessions that failed to open, or died while held
	Open     time.Duration // time to open and log in all of them
	Held     time.Duration // time they were held idle
	First    []string      // the first few error messages
}

func (r HoldResult) String() string {
	return fmt.Sprintf("mode=%s sessions=%d opened=%d alive=%d errors=%d open_s=%.3f held_s=%.3f",
		ModeIMAPHold, r.Sessions, r.Opened, r.Alive, r.Errors, r.Open.Seconds(), r.Held.Seconds())
}

// held is one logged-in session.
type held struct {
	c net.Conn
	s *lineConn
}

// RunHold opens cfg.Count IMAP sessions to cfg.Addr, cfg.Conns at a time,
// each logged in as a user of the population drawn in turn from [First,
// First+Users), and keeps them all open and idle (nothing is sent). Once
// every session has been tried it calls ready with the count so far (may be
// nil), then holds them for cfg.Duration, or until ctx is done when
// Duration is 0. Then it checks each session with a NOOP, which must be
// answered OK within cfg.Timeout, and closes them. A session that failed to
// open or to answer is an error.
func RunHold(ctx context.Context, cfg Config, ready func(HoldResult)) (HoldResult, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	res := HoldResult{Sessions: cfg.Count}
	switch {
	case cfg.Addr == "":
		return res, errors.New("bench: no address")
	case cfg.Count < 1:
		return res, errors.New("bench: imap-hold needs --count >= 1 (the sessions to hold)")
	case cfg.Users < 1 || cfg.First < 0 || cfg.Conns < 1:
		return res, errors.New("bench: need conns >= 1, users >= 1, first >= 0")
	}
	r := &runner{cfg: cfg, base: time.Now()}
	sessions := make([]held, cfg.Count)
	defer func() {
		for _, h := range sessions {
			if h.c != nil {
				h.c.Close()
			}
		}
	}()
	var errs atomic.Int64
	fail := func(j int, what string, err error) {
		errs.Add(1)
		r.report(func() string {
			return fmt.Sprintf("session %d (%s): %s: %v", j, Login(cfg.First+j%cfg.Users), what, err)
		})
	}

	// Open them all, Conns at a time.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(cfg.Conns, cfg.Count) {
		wg.Go(func() {
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= cfg.Count {
					return
				}
				h, err := holdOpen(ctx, cfg, cfg.First+j%cfg.Users)
				if err != nil {
					fail(j, "open", err)
					continue
				}
				sessions[j] = h
			}
		})
	}
	wg.Wait()
	res.Open = r.now()
	for _, h := range sessions {
		if h.c != nil {
			res.Opened++
		}
	}
	if ready != nil {
		ready(res)
	}

	// Hold, idle.
	t0 := time.Now()
	if ctx.Err() == nil {
		var timeout <-chan time.Time
		if cfg.Duration > 0 {
			t := time.NewTimer(cfg.Duration)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ctx.Done():
		case <-timeout:
		}
	}
	res.Held = time.Since(t0)

	// Check each is still there (ctx may be done: this runs regardless,
	// bounded by the timeout).
	var alive atomic.Int64
	next.Store(0)
	for range min(cfg.Conns, cfg.Count) {
		wg.Go(func() {
			for {
				j := int(next.Add(1) - 1)
				if j >= cfg.Count {
					return
				}
				h := sessions[j]
				if h.c == nil {
					continue
				}
				if err := holdCheck(h, cfg.Timeout); err != nil {
					fail(j, "NOOP after the hold", err)
					continue
				}
				alive.Add(1)
			}
		})
	}
	wg.Wait()
	res.Alive = int(alive.Load())
	res.Errors = errs.Load()
	r.mu.Lock()
	res.First = r.shown
	r.mu.Unlock()
	if res.Errors > 0 {
		return res, fmt.Errorf("bench: %d of %d sessions failed; first: %s", res.Errors, res.Sessions, res.First[0])
	}
	return res, nil
}

// holdOpen connects and logs in as user i.
func holdOpen(ctx context.Context, cfg Config, i int) (held, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return held{}, err
	}
	c.SetDeadline(time.Now().Add(cfg.Timeout))
	s := &lineConn{c: c, r: bufio.NewReaderSize(c, 512)}
	if l, err := s.line(); err != nil || !strings.HasPrefix(l, "* OK") {
		c.Close()
		return held{}, fmt.Errorf("greeting %q: %v", l, err)
	}
	if err := s.send(`a LOGIN "` + Login(i) + `" "` + Password(i) + `"`); err != nil {
		c.Close()
		return held{}, err
	}
	if l, err := s.untilTagged("a"); err != nil || !strings.HasPrefix(l, "a OK") {
		c.Close()
		return held{}, fmt.Errorf("login answered %q: %v", l, err)
	}
	c.SetDeadline(time.Time{})
	return held{c: c, s: s}, nil
}

// holdCheck sends NOOP on a held session and waits for its OK.
func holdCheck(h held, timeout time.Duration) error {
	h.c.SetDeadline(time.Now().Add(timeout))
	if err := h.s.send("n NOOP"); err != nil {
		return err
	}
	l, err := h.s.untilTagged("n")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "n OK") {
		return fmt.Errorf("NOOP answered %q", l)
	}
	return nil
}
