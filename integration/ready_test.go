package integration

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// privateRedis is a redis-server of the test's own, on a free port, that
// the test can stop and start again on the same port.
type privateRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("no redis-server; run scripts/test-services.sh")
	}
	r := &privateRedis{t: t, port: freePort(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for {
		c, err := net.Dial("tcp", r.addr())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *privateRedis) stop() {
	if r.cmd == nil || r.cmd.ProcessState != nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, httpAddr string) (int, string) {
	t.Helper()
	return httpGet(t, "http://"+httpAddr+"/readyz")
}

// eventuallyReady polls /readyz until its status is code and its body
// holds every line of want; the hang guard fails the test.
func eventuallyReady(t *testing.T, httpAddr string, code int, want ...string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		got, body := readyz(t, httpAddr)
		ok := got == code
		for _, w := range want {
			ok = ok && regexp.MustCompile("(?m)^"+w).MatchString(body)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d\n%s\nwant %d with %q", got, body, code, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantGauge checks /metrics' tohost_ready for a dependency.
func wantGauge(t *testing.T, httpAddr, dep string, v int) {
	t.Helper()
	_, body := httpGet(t, "http://"+httpAddr+"/metrics")
	if want := fmt.Sprintf(`tohost_ready{dependency=%q} %d`, dep, v); !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestReadyAndOutageLog: /readyz and tohost_ready follow PostgreSQL and
// Redis going away and coming back: Redis down is reported but leaves
// the directory ready (misses go to PostgreSQL); PostgreSQL down makes
// it 503. /healthz stays 200 throughout. A storm of failing requests
// during the PostgreSQL outage writes a constant number of log lines:
// one when the outage starts, one with the count when it ends.
func TestReadyAndOutageLog(t *testing.T) {
	pg, rd := startPrivatePostgres(t), startPrivateRedis(t)
	httpAddr := freeAddr(t)
	d := startDirectory(t, t.TempDir(), "--postgres", pg.url(), "--redis", "redis://"+rd.addr(), "--http-addr", httpAddr)
	c := dial(t, d.addr)
	c.expect("set u@x pw", "+OK u@x added to database")
	eventuallyReady(t, httpAddr, 200, "ready$", "postgres ok$", "redis ok$")
	wantGauge(t, httpAddr, "postgres", 1)
	wantGauge(t, httpAddr, "redis", 1)

	rd.stop()
	eventuallyReady(t, httpAddr, 200, "ready$", "postgres ok$", "redis down: ")
	wantGauge(t, httpAddr, "redis", 0)

	pg.stop()
	eventuallyReady(t, httpAddr, 503, "not ready$", "postgres down: ", "redis down: ")
	wantGauge(t, httpAddr, "postgres", 0)
	if code, body := httpGet(t, "http://"+httpAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz with PostgreSQL down: %d %s", code, body)
	}
	const storm = 1000
	var req strings.Builder
	for i := range storm {
		fmt.Fprintf(&req, "lookup nobody%d@x\r\n", i)
	}
	c.write(req.String())
	for i := range storm {
		if got := c.line(); got != "-DEAD directory unavailable" {
			t.Fatalf("lookup %d with PostgreSQL down: %q", i, got)
		}
	}

	pg.start()
	rd.start()
	eventuallyReady(t, httpAddr, 200, "ready$", "postgres ok$", "redis ok$")
	c.eventually("set v@x pw", "+OK v@x added to database")
	wantGauge(t, httpAddr, "postgres", 1)
	wantGauge(t, httpAddr, "redis", 1)
	d.kill()

	log := d.log.String()
	lines := strings.Count(log, "\n")
	if lines > 40 {
		t.Errorf("%d log lines for %d failed requests:\n%s", lines, storm, log)
	}
	if n := strings.Count(log, `msg="store unavailable" store=postgres`); n != 1 {
		t.Errorf("%d outage-start lines:\n%s", n, log)
	}
	m := regexp.MustCompile(`level=INFO msg="store available again" store=postgres failed=(\d+) down_for=\S+`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no recovery line with the count:\n%s", log)
	}
	if n, _ := strconv.Atoi(m[1]); n < storm {
		t.Errorf("recovery line counts %d failures, want at least %d", n, storm)
	}
	if n := strings.Count(log, `msg="redis unavailable, serving from the store"`); n != 1 {
		t.Errorf("%d Redis outage-start lines:\n%s", n, log)
	}
	if strings.Contains(log, "pool.go") {
		t.Errorf("the Redis client's own lines are in the log:\n%s", log)
	}
}
