package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// privatePostgres is a PostgreSQL server of the test's own, on a free
// port, that the test can stop and start: failure tests must not stop the
// server the other tests share.
type privatePostgres struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cred *syscall.Credential
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("no PostgreSQL server binaries under /usr/lib/postgresql; run scripts/test-services.sh")
	}
	// The server refuses to run as root; it runs as the postgres user.
	pu, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	dir, err := os.MkdirTemp("", "tohost-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	p := &privatePostgres{t: t, bin: filepath.Dir(bins[len(bins)-1]), dir: dir,
		port: freePort(t), cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	p.run("initdb", "-D", p.data(), "-U", "postgres", "-A", "trust", "--no-sync")
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *privatePostgres) data() string { return filepath.Join(p.dir, "data") }

func (p *privatePostgres) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

func (p *privatePostgres) run(name string, args ...string) {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func (p *privatePostgres) start() {
	p.t.Helper()
	p.run("pg_ctl", "-D", p.data(), "-w", "-l", filepath.Join(p.dir, "log"), "start",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.dir))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, p.url())
		if err == nil {
			c.Close(ctx)
			return
		}
		if ctx.Err() != nil {
			p.t.Fatalf("private postgres did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop shuts the server down at once (pg_ctl -m immediate), as a crash or
// a network cut would look to the directory.
func (p *privatePostgres) stop() {
	cmd := exec.Command(filepath.Join(p.bin, "pg_ctl"), "-D", p.data(), "-m", "immediate", "-w", "stop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Run() // already stopped is fine
}

// freeze stops (SIGSTOP) or resumes (SIGCONT) every process of the
// server: a hung database whose connections stay open, as a cut network
// or a stuck disk looks.
func (p *privatePostgres) freeze(sig syscall.Signal) {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.data(), "postmaster.pid"))
	if err != nil {
		p.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		p.t.Fatal(err)
	}
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	for _, f := range append(strings.Fields(string(out)), strconv.Itoa(pid)) {
		n, _ := strconv.Atoi(f)
		syscall.Kill(n, sig)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
