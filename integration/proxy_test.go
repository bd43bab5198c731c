package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// fakeIMAPBackend accepts LOGIN of one user and answers SELECT, so a test
// sees a session carried through the proxy. It records the logins.
func fakeIMAPBackend(t *testing.T, user, pass string) (string, chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	logins := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 LITERAL+] backend ready\r\n")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(l)
					if len(f) < 2 {
						continue
					}
					switch strings.ToUpper(f[1]) {
					case "LOGIN":
						got := strings.Trim(strings.Join(f[2:], " "), `"`)
						logins <- got
						if got == user+`" "`+pass {
							io.WriteString(c, f[0]+" OK [CAPABILITY IMAP4rev1 IDLE BACKEND] logged in\r\n")
						} else {
							io.WriteString(c, f[0]+" NO backend refused\r\n")
						}
					case "SELECT":
						io.WriteString(c, "* 3 EXISTS\r\n"+f[0]+" OK [READ-WRITE] SELECT completed\r\n")
					case "LOGOUT":
						io.WriteString(c, "* BYE\r\n"+f[0]+" OK LOGOUT completed\r\n")
						return
					default:
						io.WriteString(c, f[0]+" OK\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), logins
}

// startProxy runs `tohost proxy` with IMAP on a free port and waits until
// it accepts connections.
func startProxy(t *testing.T, directory string, extra ...string) (imapAddr string, log *testservices.Buffer) {
	t.Helper()
	imapAddr, log, _ = startProxyCmd(t, directory, extra...)
	return imapAddr, log
}

// startProxyCmd is startProxy that also returns the process.
func startProxyCmd(t *testing.T, directory string, extra ...string) (imapAddr string, log *testservices.Buffer, cmd *exec.Cmd) {
	t.Helper()
	imapAddr = freeAddr(t)
	log = new(testservices.Buffer)
	args := append([]string{"proxy", "--directory", directory, "--imap-addr", imapAddr, "--http-addr", ""}, extra...)
	cmd = exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", imapAddr)
		if err == nil {
			c.Close()
			return imapAddr, log, cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not start: %v\n%s", err, log)
		}
	}
}

// TestProxyRoutesToTohost: a login at the proxy is checked with the
// directory and carried to the backend in the user's tohost; the client
// sees the backend's capabilities and its answers.
func TestProxyRoutesToTohost(t *testing.T) {
	backend, logins := fakeIMAPBackend(t, "bob@example.com", "s3cret")
	d := startDirectory(t, t.TempDir())
	dial(t, d.addr).expect("set bob@example.com s3cret tohost="+backend, "+OK bob@example.com added to database")
	httpAddr := freeAddr(t)
	imapAddr, log := startProxy(t, d.addr, "--http-addr", httpAddr)

	c := dial(t, imapAddr)
	if l := c.line(); !strings.HasPrefix(l, "* OK [CAPABILITY") {
		t.Fatalf("greeting %q", l)
	}
	c.write("a LOGIN bob@example.com wrong\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", l)
	}
	c.write("b LOGIN bob@example.com s3cret\r\nc SELECT INBOX\r\n")
	if l := c.line(); l != "b OK [CAPABILITY IMAP4rev1 IDLE BACKEND] logged in" {
		t.Fatalf("login: %q\n%s", l, log)
	}
	if got := <-logins; got != `bob@example.com" "s3cret` {
		t.Fatalf("backend got login %q", got)
	}
	if l := c.line(); l != "* 3 EXISTS" {
		t.Fatalf("select through the proxy: %q", l)
	}
	c.line()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tohost_proxy_logins_total{outcome="ok",protocol="imap"} 1`,
		`tohost_proxy_logins_total{outcome="failed",protocol="imap"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestProxyDirectoryDown: with the directory gone, a login is a temporary
// failure, never a wrong password; back, it works without a restart.
func TestProxyDirectoryDown(t *testing.T) {
	backend, _ := fakeIMAPBackend(t, "bob@example.com", "s3cret")
	dataDir := t.TempDir()
	d := startDirectory(t, dataDir)
	dial(t, d.addr).expect("set bob@example.com s3cret tohost="+backend, "+OK bob@example.com added to database")
	imapAddr, _ := startProxy(t, d.addr, "--timeout", "2s")
	d.kill()

	c := dial(t, imapAddr)
	c.line()
	c.write("a LOGIN bob@example.com s3cret\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
		t.Fatalf("directory down: %q", l)
	}
	again := &daemon{addr: d.addr, log: new(testservices.Buffer)}
	again.cmd = exec.Command(binary, directoryArgs(dataDir, d.addr)...)
	again.start(t)
	for deadline := time.Now().Add(30 * time.Second); ; { // the client's retry is a hang guard away
		c.write("b LOGIN bob@example.com s3cret\r\n")
		l := c.line()
		if strings.HasPrefix(l, "b OK") {
			break
		}
		if !strings.HasPrefix(l, "b NO [UNAVAILABLE]") || time.Now().After(deadline) {
			t.Fatalf("directory back: %q", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProxyBadFlags: wrong flags stop the start with a message naming them.
func TestProxyBadFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"--backend-tls sometimes", "--backend-tls"},
		{"--require-tls", "--require-tls needs --tls-cert"},
		{"--imaps-addr 127.0.0.1:0", "--imaps-addr needs --tls-cert"},
		{"--backend-smtp-protocol uucp", "--backend-smtp-protocol"},
		{"--max-login-failures 0", "--max-login-failures"},
	} {
		out, err := exec.Command(binary, append([]string{"proxy", "--http-addr", ""}, strings.Fields(tc.args)...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %v\n%s", tc.args, err, out)
		}
	}
}

// TestProxyShutdown: on SIGTERM the proxy stops accepting, gives an
// established session --shutdown-timeout, then closes it and exits 0.
func TestProxyShutdown(t *testing.T) {
	backend, _ := fakeIMAPBackend(t, "bob@example.com", "s3cret")
	d := startDirectory(t, t.TempDir())
	dial(t, d.addr).expect("set bob@example.com s3cret tohost="+backend, "+OK bob@example.com added to database")
	imapAddr, log, cmd := startProxyCmd(t, d.addr, "--shutdown-timeout", "1s")
	c := dial(t, imapAddr)
	c.line()
	c.write("a LOGIN bob@example.com s3cret\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q", l)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The established session goes on during the drain...
	c.write("b SELECT INBOX\r\n")
	if l := c.line(); l != "* 3 EXISTS" {
		t.Fatalf("session during the drain: %q", l)
	}
	c.line()
	// ...and is closed when it ends; the proxy exits cleanly.
	if _, err := io.ReadAll(c.r); err != nil {
		t.Fatalf("session at the end of the drain: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "proxy stopped") {
		t.Fatalf("no stop line:\n%s", log)
	}
	if c, err := net.Dial("tcp", imapAddr); err == nil {
		c.Close()
		t.Fatal("still accepting after the stop")
	}
}
