package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ModeLMTPDeliver delivers messages over LMTP (RunDeliveries).
const ModeLMTPDeliver = "lmtp-deliver"

// RunDeliveries runs cfg.Conns senders, each with one LMTP connection to
// cfg.Addr (a backend), delivering cfg.MessageBytes messages one after
// another to cfg.Rcpts users of the population each, until cfg.Duration
// or cfg.Count is reached. A delivery counts as done when every recipient
// got its 250; any other reply, or a transport error, is an error (the
// sender then reconnects). The latency is one whole transaction: MAIL,
// RCPTs, DATA and the last recipient's reply, which a backend gives once
// the message is on disk.
func RunDeliveries(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MessageBytes == 0 {
		cfg.MessageBytes = 10 << 10
	}
	if cfg.Rcpts == 0 {
		cfg.Rcpts = 1
	}
	switch {
	case cfg.Mode != ModeLMTPDeliver:
		return Result{}, fmt.Errorf("bench: unknown delivery mode %q", cfg.Mode)
	case cfg.Addr == "":
		return Result{}, errors.New("bench: no address")
	case cfg.Users < 1 || cfg.First < 0 || cfg.Conns < 1 || cfg.Rcpts < 1 || cfg.MessageBytes < 1:
		return Result{}, errors.New("bench: need conns >= 1, users >= 1, first >= 0, rcpts >= 1, size >= 1")
	case cfg.Duration == 0 && cfg.Count == 0:
		return Result{}, errors.New("bench: need a duration or a count (or both)")
	}
	users := cfg.deliveryUsers()
	if len(users) == 0 {
		return Result{}, fmt.Errorf("bench: no user of [%d, %d) has tohost %s", cfg.First, cfg.First+cfg.Users, cfg.ToHost)
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
			s := &sender{cfg: cfg, k: k, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(k)))}
			defer s.close()
			for n := 0; ctx.Err() == nil && (r.end == 0 || r.now() < r.end); n++ {
				if cfg.Count > 0 && r.issued.Add(1) > int64(cfg.Count) {
					return
				}
				rcpts := make([]int, cfg.Rcpts)
				for j := range rcpts {
					rcpts[j] = users[s.rng.IntN(len(users))]
				}
				t0 := r.now()
				err := s.deliver(ctx, rcpts, n)
				hists[k].record(r.now() - t0)
				if err != nil {
					errs.Add(1)
					s.close()
					r.report(func() string { return fmt.Sprintf("conn %d: delivery to %s: %v", k, Login(rcpts[0]), err) })
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
	res := Result{Mode: cfg.Mode, Conns: cfg.Conns, Depth: 1, Elapsed: elapsed, Requests: int64(h.n), Errors: errs.Load()}
	if s := elapsed.Seconds(); s > 0 {
		res.RPS = float64(res.Requests) / s
		res.ClientCPU = cpu.Seconds() / s * 100
	}
	res.P50, res.P99, res.P999 = h.quantile(0.50), h.quantile(0.99), h.quantile(0.999)
	res.Max = time.Duration(h.max)
	r.mu.Lock()
	res.FirstErrors = r.shown
	r.mu.Unlock()
	if res.Errors > 0 {
		return res, fmt.Errorf("bench: %d of %d deliveries failed; first: %s", res.Errors, res.Requests, res.FirstErrors[0])
	}
	return res, ctx.Err()
}

// deliveryUsers lists the users of [First, First+Users) on cfg.ToHost
// (all of them when it is empty).
func (cfg Config) deliveryUsers() []int {
	var out []int
	for i := cfg.First; i < cfg.First+cfg.Users; i++ {
		if cfg.ToHost == "" || strings.EqualFold(ToHost(i), cfg.ToHost) {
			out = append(out, i)
		}
	}
	return out
}

// sender is one LMTP connection of RunDeliveries.
type sender struct {
	cfg  Config
	k    int
	rng  *rand.Rand
	c    net.Conn
	rd   *bufio.Reader
	body []byte // the message after its first line, dot-stuffed, with the final dot
}

func (s *sender) close() {
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

// deliver sends message n to the users rcpts and checks every reply.
func (s *sender) deliver(ctx context.Context, rcpts []int, n int) error {
	if s.c == nil {
		d := net.Dialer{Timeout: s.cfg.Timeout}
		c, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			return err
		}
		s.c, s.rd = c, bufio.NewReaderSize(c, 4096)
		c.SetDeadline(time.Now().Add(s.cfg.Timeout))
		if err := s.expect("greeting", "220"); err != nil {
			return err
		}
		if err := s.cmd("LHLO bench.example", "LHLO", "250"); err != nil {
			return err
		}
	}
	s.c.SetDeadline(time.Now().Add(s.cfg.Timeout))
	if err := s.cmd("MAIL FROM:<bench@bench.example>", "MAIL", "250"); err != nil {
		return err
	}
	for _, i := range rcpts {
		if err := s.cmd("RCPT TO:<"+Login(i)+">", "RCPT "+Login(i), "250"); err != nil {
			return err
		}
	}
	if err := s.cmd("DATA", "DATA", "354"); err != nil {
		return err
	}
	if s.body == nil {
		s.body = messageBody(s.cfg.MessageBytes)
	}
	// The first line makes each message unique; the rest is the same.
	if _, err := fmt.Fprintf(s.c, "Message-ID: <%d.%d.%d@bench.example>\r\n", s.cfg.Seed, s.k, n); err != nil {
		return err
	}
	if _, err := s.c.Write(s.body); err != nil {
		return err
	}
	for _, i := range rcpts {
		if err := s.expect("DATA "+Login(i), "250"); err != nil {
			return err
		}
	}
	return nil
}

func (s *sender) cmd(line, what, code string) error {
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return err
	}
	return s.expect(what, code)
}

// expect reads one reply (all its lines) and checks its code.
func (s *sender) expect(what, code string) error {
	for {
		l, err := s.rd.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if len(l) >= 4 && l[3] == '-' && strings.HasPrefix(l, code) {
			continue
		}
		if !strings.HasPrefix(l, code+" ") {
			return fmt.Errorf("%s answered %q", what, strings.TrimRight(l, "\r\n"))
		}
		return nil
	}
}

// messageBody is a message of about size bytes after its Message-ID line,
// ending with the terminating dot.
func messageBody(size int) []byte {
	var b strings.Builder
	b.WriteString("From: bench@bench.example\r\nTo: users@bench.example\r\nSubject: tohost bench\r\n\r\n")
	line := "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrst\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}
