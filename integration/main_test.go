// Package integration starts real tohost processes and talks to them the
// way mail servers and admins do.
package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// binary is the tohost executable built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tohost-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tohost")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/tohost")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building tohost:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// daemon is a running `tohost directory`.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	log  *testservices.Buffer
	// traced: cmd is strace running the directory as its child, so kill
	// must end that child (strace killed first would leave it running).
	traced bool
}

// directoryArgs are the arguments of `tohost directory` serving TCPAuth
// only, on addr, from dataDir.
func directoryArgs(dataDir, addr string, extra ...string) []string {
	return append([]string{"directory", "--data-dir", dataDir, "--tcpauth-addr", addr,
		"--http-addr", "", "--ldap-addr", "", "--password-scheme", "SSHA"}, extra...)
}

// startDirectory runs `tohost directory` on dataDir and waits until it
// answers ping.
func startDirectory(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{addr: freeAddr(t), log: new(testservices.Buffer)}
	d.cmd = exec.Command(binary, directoryArgs(dataDir, d.addr, extra...)...)
	d.start(t)
	return d
}

// start runs d.cmd and waits until d.addr accepts connections.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("directory did not start: %v\n%s", err, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL: no chance to flush anything.
func (d *daemon) kill() {
	if d.cmd.ProcessState != nil {
		return
	}
	if d.traced {
		pid := d.cmd.Process.Pid
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(children)) {
			if child, err := strconv.Atoi(f); err == nil {
				syscall.Kill(child, syscall.SIGKILL)
			}
		}
		// strace exits once its child has, after writing the whole trace.
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				d.cmd.Process.Kill()
			}
		}()
		d.cmd.Wait()
		close(done)
		return
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
}

// conn is a raw protocol connection.
type conn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	return &conn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *conn) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *conn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}
