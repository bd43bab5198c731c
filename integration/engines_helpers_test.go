package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of the test's own on a free loopback
// port, which the test may freeze: the shared one must not be.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	dir := t.TempDir()
	s := &redisServer{t: t, port: freePort(t)}
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}, extra...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v (run scripts/test-services.sh to install it)", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill() // a stopped process dies of SIGKILL too
		s.cmd.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: s.addr()})
	defer c.Close()
	pollUntil(t, "redis-server answers", func() bool { return c.Ping(context.Background()).Err() == nil })
	return s
}

func (s *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// freeze stops (SIGSTOP) or resumes (SIGCONT) the server: its
// connections stay open and silent, as a hung host looks.
func (s *redisServer) freeze(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// startRedisCluster runs a Redis Cluster of three masters (no replicas)
// and returns their addresses once every node reports the cluster up.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	var addrs []string
	for range 3 {
		s := startRedisServer(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-config-file", filepath.Join(t.TempDir(), "nodes.conf"))
		addrs = append(addrs, s.addr())
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		pollUntil(t, "cluster up at "+a, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		c.Close()
	}
	return addrs
}

// pollUntil polls cond; the hang guard fails the test.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(hangGuard); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not after %v", what, hangGuard)
		}
	}
}

// startStandby makes a streaming standby of p (pg_basebackup -R) and
// runs it on a port of its own.
func (p *privatePostgres) startStandby() *privatePostgres {
	p.t.Helper()
	dir, err := os.MkdirTemp("", "tohost-pg-standby")
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
		p.t.Fatal(err)
	}
	s := &privatePostgres{t: p.t, bin: p.bin, dir: dir, port: freePort(p.t), cred: p.cred}
	s.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres",
		"-D", s.data(), "-R", "-X", "stream", "--no-sync")
	s.start()
	p.t.Cleanup(s.stop)
	return s
}

// exec runs one statement on the server.
func (p *privatePostgres) exec(sql string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := pgx.Connect(ctx, p.url())
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
}

// makeSynchronous has p wait for its standby before acknowledging a
// commit, so that a commit the directory acknowledged survives the loss
// of p; it returns once the standby is attached as synchronous.
func (p *privatePostgres) makeSynchronous() {
	p.t.Helper()
	p.exec("ALTER SYSTEM SET synchronous_standby_names = '*'")
	p.exec("SELECT pg_reload_conf()")
	c, err := pgx.Connect(context.Background(), p.url())
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close(context.Background())
	pollUntil(p.t, "synchronous standby", func() bool {
		var n int
		err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").Scan(&n)
		return err == nil && n == 1
	})
}

// multiHostURL lists the servers for a client that must find the primary
// among them.
func multiHostURL(servers ...*privatePostgres) string {
	var hosts []string
	for _, s := range servers {
		hosts = append(hosts, fmt.Sprintf("127.0.0.1:%d", s.port))
	}
	return "postgres://postgres@" + strings.Join(hosts, ",") +
		"/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=2"
}
