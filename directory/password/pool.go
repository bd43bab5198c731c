package password

import (
	"container/heap"
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// ErrBusy: a slow hash waited longer than the pool's queue timeout for a
// worker, and was not computed.
var ErrBusy = errors.New("password: hashing queue full, try again")

// Pool runs slow hashes (argon2, bcrypt, sha-crypt), at most Workers at
// once, shared fairly between clients.
//
// Bounded, because the work is CPU-bound and argon2 holds its memory while
// it runs: more at once than cores buys no throughput, takes memory in
// proportion to a burst, and leaves no core to lookups, which cost
// microseconds each.
//
// Fair, because one client address guessing names as fast as it can must
// not turn every other client's login into a long wait: the waiting hashes
// are served by start-time fair queuing. Each is tagged with the virtual
// time at which its client's previous hash ends, or now if the client has
// none pending, and the smallest tag goes first. A client that arrives
// while another has a thousand queued starts after the hash running now,
// not after the thousand; n busy clients each get 1/n of the workers.
//
// The lock guards only the queue: hashes run outside it, in the caller's
// goroutine. A hash that waits longer than the timeout gives up with
// ErrBusy, so a storm is answered "busy" rather than queued without end.
type Pool struct {
	workers int
	timeout time.Duration

	mu      sync.Mutex
	running int
	vtime   uint64 // tag of the latest hash started
	seq     uint64 // arrival order, for equal tags
	clients map[string]*poolClient
	queue   waitQueue

	// granted, when set (tests), is called under the lock with the
	// client of each hash that leaves the queue for a worker.
	granted func(client string)
}

// poolClient is a client with hashes pending (queued or running).
type poolClient struct {
	next    uint64 // tag its next hash gets, unless the pool is past it
	pending int
}

// DefaultHashWorkers leaves a core to everything else, and is at least 1.
func DefaultHashWorkers() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// NewPool returns a pool of workers (DefaultHashWorkers for 0 or less)
// whose hashes wait at most timeout for one (0 or less: no limit).
func NewPool(workers int, timeout time.Duration) *Pool {
	if workers <= 0 {
		workers = DefaultHashWorkers()
	}
	return &Pool{workers: workers, timeout: timeout, clients: make(map[string]*poolClient)}
}

// Workers returns how many hashes run at once.
func (p *Pool) Workers() int { return p.workers }

// Do runs fn, a slow hash asked for by client, once a worker is free and
// the client's turn has come. It returns ErrBusy, or ctx's error, without
// running fn if that takes too long. A nil Pool runs fn at once.
func (p *Pool) Do(ctx context.Context, client string, fn func()) error {
	if p == nil {
		fn()
		return nil
	}
	if w := p.enter(client); w != nil {
		if err := p.wait(ctx, w); err != nil {
			return err
		}
	}
	defer p.leave(client)
	fn()
	return nil
}

// Waiting returns the number of hashes queued for a worker.
func (p *Pool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// enter tags a hash of client and starts it if a worker is free (nil), or
// queues it.
func (p *Pool) enter(client string) *waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[client]
	if c == nil {
		c = &poolClient{}
		p.clients[client] = c
	}
	c.pending++
	tag := max(p.vtime, c.next)
	c.next = tag + 1
	if p.running < p.workers { // then nothing is queued: leave hands workers over
		p.running++
		p.vtime = tag
		return nil
	}
	p.seq++
	w := &waiter{client: client, tag: tag, seq: p.seq, ready: make(chan struct{})}
	heap.Push(&p.queue, w)
	return w
}

// wait blocks until w is handed a worker, or gives up.
func (p *Pool) wait(ctx context.Context, w *waiter) error {
	var expired <-chan time.Time
	if p.timeout > 0 {
		t := time.NewTimer(p.timeout)
		defer t.Stop()
		expired = t.C
	}
	var err error
	select {
	case <-w.ready:
		return nil
	case <-expired:
		err = ErrBusy
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.index < 0 { // handed a worker meanwhile: it is ours to use
		return nil
	}
	heap.Remove(&p.queue, w.index)
	p.doneLocked(w.client)
	return err
}

// leave ends a hash of client and hands its worker to the first in line.
func (p *Pool) leave(client string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.doneLocked(client)
	if p.queue.Len() == 0 {
		p.running--
		return
	}
	w := heap.Pop(&p.queue).(*waiter)
	p.vtime = max(p.vtime, w.tag)
	if p.granted != nil {
		p.granted(w.client)
	}
	close(w.ready)
}

// doneLocked forgets a client with nothing pending, so the map holds only
// clients with hashes queued or running.
func (p *Pool) doneLocked(client string) {
	c := p.clients[client]
	if c.pending--; c.pending == 0 {
		delete(p.clients, client)
	}
}

// waiter is a queued hash.
type waiter struct {
	client   string
	tag, seq uint64
	index    int // in the queue; -1 once out of it
	ready    chan struct{}
}

// waitQueue is a heap of waiters, smallest tag (then earliest) first.
type waitQueue []*waiter

func (q waitQueue) Len() int { return len(q) }
func (q waitQueue) Less(i, j int) bool {
	return q[i].tag < q[j].tag || q[i].tag == q[j].tag && q[i].seq < q[j].seq
}
func (q waitQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waitQueue) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waitQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*q = old[:len(old)-1]
	return w
}
