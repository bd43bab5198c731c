package integration

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// module runs `tohost authent` the way a NetWin mail server runs its
// g_authent_process: commands on stdin, replies on stdout.
type module struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Reader
	cmd *exec.Cmd
}

func startModule(t *testing.T, directories string) *module {
	t.Helper()
	cmd := exec.Command(binary, "authent", "--directory", directories, "--timeout", "2s")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	return &module{t: t, in: in, out: bufio.NewReader(out), cmd: cmd}
}

// expect sends one command and checks the reply lines, which must end
// with LF alone.
func (m *module) expect(req string, want ...string) {
	m.t.Helper()
	if _, err := io.WriteString(m.in, req+"\n"); err != nil {
		m.t.Fatal(err)
	}
	for _, w := range want {
		got, err := m.readLine()
		if err != nil {
			m.t.Fatalf("%s: %v", req, err)
		}
		if strings.HasSuffix(got, "\r\n") || !strings.HasSuffix(got, "\n") {
			m.t.Fatalf("%s: reply %q does not end with a bare LF", req, got)
		}
		if got = strings.TrimSuffix(got, "\n"); got != w {
			m.t.Fatalf("%s:\n got %q\nwant %q", req, got, w)
		}
	}
}

func (m *module) readLine() (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() { s, err := m.out.ReadString('\n'); ch <- result{s, err} }()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(20 * time.Second):
		return "", io.ErrNoProgress
	}
}

// TestModuleModeTranscript: the NWAuth session of SurgeMail's documentation
// (docs/protocol.md, "A first session") through `tohost authent`, relayed
// to a directory over TCP.
func TestModuleModeTranscript(t *testing.T) {
	d := startDirectory(t, t.TempDir())
	m := startModule(t, d.addr)
	m.expect("set bob@test.com bob", "+OK bob@test.com added to database")
	m.expect("lookup bob@test.com", "+OK bob@test.com config 0")
	m.expect("check bob@test.com xxx", "-ERR bob@test.com password wrong or not a valid user")
	m.expect(`set bob@test.com (NULL) quota="200" fwd="fred@test.com"`, "+OK bob@test.com added to database")
	m.expect("lookup bob@test.com", `+OK bob@test.com config 0 quota="200" fwd="fred@test.com"`)
	m.expect("search bob", "+DATA bob@test.com", "+OK Search Complete 1 items found out of 1")
	m.expect("exit", "+OK")
	if err := m.cmd.Wait(); err != nil {
		t.Fatalf("module exit: %v", err)
	}
}

// TestModuleModeFailover: the first directory address is down; the module
// answers from the second, and says -DEAD when none answers.
func TestModuleModeFailover(t *testing.T) {
	d := startDirectory(t, t.TempDir())
	m := startModule(t, freeAddr(t)+","+d.addr)
	m.expect("set a@x pw", "+OK a@x added to database")
	m.expect("check a@x pw", "+OK a@x config 0")
	d.kill()
	m.expect("lookup a@x", "-DEAD directory unavailable")
}
