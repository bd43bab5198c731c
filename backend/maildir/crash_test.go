package maildir

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const (
	crashEnv  = "TOHOST_MAILDIR_CRASH_ROOT"
	crashUser = "crash@example.org"
	crashHost = "crash.example"
)

var crashPattern = bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), (256<<10)/26+2)

// crashBody is message n: a header giving its length and a body of that
// many bytes, so that a file cut short is seen.
func crashBody(n int) []byte {
	size := 1 + (n*7919)%(256<<10)
	var b bytes.Buffer
	fmt.Fprintf(&b, "X-Seq: %d\r\nX-Len: %d\r\n\r\n", n, size)
	off := n % 26
	b.Write(crashPattern[off : off+size])
	return b.Bytes()
}

// chunkReader returns 512 bytes a Read, so that a message is written in
// many steps and a kill often lands in the middle of one.
type chunkReader struct{ b []byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 512)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// checkCrashBody reports whether b is a whole message made by crashBody.
func checkCrashBody(b []byte) bool {
	var n, size int
	if _, err := fmt.Sscanf(string(b), "X-Seq: %d\r\nX-Len: %d\r\n\r\n", &n, &size); err != nil {
		return false
	}
	return bytes.Equal(b, crashBody(n))
}

// TestCrashChild is the child of TestCrash: it delivers in a loop from
// four goroutines, printing "D <key>" once Deliver has returned, and after
// every few deliveries Syncs and prints "V <uidvalidity>" and a
// "U <uid> <key>" line per message. It runs until it is killed.
func TestCrashChild(t *testing.T) {
	root := os.Getenv(crashEnv)
	if root == "" {
		t.Skip("child process of TestCrash")
	}
	s, err := Open(root, Options{Hostname: crashHost})
	if err != nil {
		fmt.Println("E", err)
		os.Exit(2)
	}
	f := mustFolder(t, s, crashUser, "INBOX")
	seq, _ := strconv.Atoi(os.Getenv(crashEnv + "_SEQ"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				mu.Lock()
				seq++
				n := seq
				mu.Unlock()
				key, err := s.Deliver(crashUser, &chunkReader{b: crashBody(n)})
				if err != nil {
					fmt.Println("E", err)
					os.Exit(2)
				}
				fmt.Printf("D %s\n", key) // one write: lines from goroutines do not mix
				if g == 0 && i%5 == 0 {
					msgs, err := f.Sync()
					if err != nil {
						fmt.Println("E", err)
						os.Exit(2)
					}
					var b strings.Builder
					fmt.Fprintf(&b, "V %d\n", f.UIDValidity())
					for _, m := range msgs {
						fmt.Fprintf(&b, "U %d %s\n", m.UID, m.Key)
					}
					os.Stdout.WriteString(b.String())
				}
			}
		}()
	}
	wg.Wait()
}

// TestCrash kills a delivering child with SIGKILL, three times on the same
// root, and checks after each that Open cleans tmp/, that every
// acknowledged message is there exactly once and whole, that no partial
// file is in new/ or cur/, and that the UIDs and UIDVALIDITY the child saw
// are unchanged.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	root := t.TempDir()
	acked := map[string]bool{}
	uids := map[uint32]string{}
	var validity uint32
	udir := filepath.Join(root, "example.org", "crash")
	leftovers := 0
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+root, crashEnv+"_SEQ="+strconv.Itoa(round*1000000))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A failing check must not leave the child delivering.
		t.Cleanup(func() { cmd.Process.Kill() })
		// Kill after a random number of acknowledged deliveries past a
		// few Syncs; the child is always in the middle of something.
		killAt := 80 + rand.IntN(80)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		d, v, killed := 0, 0, false
		parse := func(line string) {
			switch {
			case strings.HasPrefix(line, "D "):
				acked[line[2:]] = true
				d++
			case strings.HasPrefix(line, "V "):
				n, _ := strconv.ParseUint(line[2:], 10, 32)
				if validity != 0 && uint32(n) != validity {
					t.Errorf("round %d: child saw UIDVALIDITY %d, was %d", round, n, validity)
				}
				validity = uint32(n)
				v++
			case strings.HasPrefix(line, "U "):
				var uid uint32
				var key string
				if _, err := fmt.Sscanf(line, "U %d %s", &uid, &key); err != nil {
					t.Fatalf("line %q", line)
				}
				if k, ok := uids[uid]; ok && k != key {
					t.Errorf("round %d: UID %d was %s, child now sees %s", round, uid, k, key)
				}
				uids[uid] = key
			case strings.HasPrefix(line, "E "):
				t.Fatalf("child: %s", line)
			}
		}
		for sc.Scan() {
			parse(sc.Text())
			if !killed && d >= killAt && v >= 3 {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("child ended by itself: %v", err)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child: %v", err)
		}
		tmps, _ := os.ReadDir(filepath.Join(udir, "tmp"))
		leftovers += len(tmps)

		s, err := Open(root, Options{Hostname: crashHost})
		if err != nil {
			t.Fatal(err)
		}
		if tmps, _ := os.ReadDir(filepath.Join(udir, "tmp")); len(tmps) != 0 {
			t.Fatalf("round %d: tmp/ after Open: %d files", round, len(tmps))
		}
		seen := map[string]int{}
		for _, sub := range []string{"new", "cur"} {
			ents, err := os.ReadDir(filepath.Join(udir, sub))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(udir, sub, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if !checkCrashBody(b) {
					t.Fatalf("round %d: partial message %s/%s (%d bytes)", round, sub, e.Name(), len(b))
				}
				k, _ := splitName(e.Name())
				seen[k]++
			}
		}
		for k := range acked {
			if seen[k] != 1 {
				t.Fatalf("round %d: acknowledged %s is there %d times", round, k, seen[k])
			}
		}
		f := mustFolder(t, s, crashUser, "INBOX")
		if f.UIDValidity() != validity {
			t.Fatalf("round %d: UIDVALIDITY %d, child saw %d", round, f.UIDValidity(), validity)
		}
		msgs := mustSync(t, f)
		byUID := map[uint32]string{}
		for _, m := range msgs {
			byUID[m.UID] = m.Key
		}
		for uid, k := range uids {
			if byUID[uid] != k {
				t.Fatalf("round %d: UID %d is %q, child saw %s", round, uid, byUID[uid], k)
			}
		}
		if len(msgs) != len(seen) {
			t.Fatalf("round %d: %d messages with UIDs, %d files", round, len(msgs), len(seen))
		}
		for _, m := range msgs {
			uids[m.UID] = m.Key
		}
		s.Close()
		t.Logf("round %d: %d acknowledged, %d UIDs, %d files in tmp/ at the kill", round, len(acked), len(uids), len(tmps))
	}
	if leftovers == 0 {
		t.Log("no kill landed during a write to tmp/")
	}
}
