package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ServeEcho is the "physical limit" line server, the same as the reference
// benchmark's echod: it answers every line it receives with reply
// (CRLF appended) and does no other work. A pipelining client gets its
// replies batched: the server flushes only when no further request is
// buffered. With reply "+OK x config 0" it answers lookups, which
// Run with AcceptAny accepts; the figure is the cost of one line-protocol
// round trip on this machine, the ceiling for the directory.
//
// It serves until ctx is done, then closes the listener and every
// connection and returns nil; it returns an error if accepting fails for
// good (e.g. the listener was closed by someone else).
func ServeEcho(ctx context.Context, ln net.Listener, reply string) error {
	resp := []byte(reply + "\r\n")
	return serveConns(ctx, ln, func(c net.Conn) { serveEchoConn(c, resp) })
}

// serveConns accepts on ln and runs handle on each connection until ctx is
// done, then closes the listener and every connection and returns nil; it
// returns an error if accepting fails for good. The bench's own servers
// (echo, IMAP stub) share it.
func serveConns(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
		wg     sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		mu.Lock()
		if closed {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			handle(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		})
	}
}

func serveEchoConn(c net.Conn, resp []byte) {
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 4096)
	for {
		if _, err := r.ReadSlice('\n'); err != nil {
			return // EOF, error, or a line longer than the buffer
		}
		w.Write(resp)
		// Flush only when no further request is already buffered, so a
		// pipelining client gets batched writes; a closed-loop client gets
		// one write per request.
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// CheckLoopback returns an error unless every address addr's host resolves
// to is a loopback address. An empty host (all interfaces) is refused too.
// The benchmark tools use it to refuse remote targets unless asked.
func CheckLoopback(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("refusing %s: it means every interface, not loopback only", addr)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return fmt.Errorf("refusing non-loopback address %s (%s)", addr, ip.IP)
		}
	}
	return nil
}
