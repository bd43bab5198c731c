package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestClusterSubmission: through `tohost cluster`, alice submits one
// message on the proxy's submission port (curl, as the printed usage
// says) to bob (the other backend), to herself and to an unknown local
// user. The proxy relays the session to alice's backend, which queues
// the message and relays it to the proxy's SMTP port: bob and alice read
// it over IMAP through the proxy, and alice gets a bounce for the unknown
// user. Every queue is empty afterwards.
func TestClusterSubmission(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed")
	}
	dir := t.TempDir()
	offset := clusterPortOffset(t)
	imap := fmt.Sprintf("imap://127.0.0.1:%d/INBOX", 1143+offset)
	subm := fmt.Sprintf("smtp://127.0.0.1:%d", 1587+offset)
	c := startCluster(t, dir, offset)
	alice, bob := c.users["alice@example.com"][0], c.users["bob@example.com"][0]
	if !strings.Contains(c.out.String(), "curl "+subm+" --mail-from alice@example.com --mail-rcpt bob@example.com") {
		t.Fatalf("the usage does not show how to submit:\n%s", c.out)
	}

	subject := fmt.Sprintf("submitted %d", time.Now().UnixNano())
	msg := "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: " + subject + "\r\n\r\nHello Bob.\r\n"
	cmd := exec.Command("curl", "--silent", "--show-error", "--verbose", "--max-time", "60", subm,
		"--mail-from", "alice@example.com", "--mail-rcpt", "bob@example.com", "--mail-rcpt", "alice@example.com",
		"--mail-rcpt", "nobody@example.com", "-u", "alice@example.com:"+alice, "-T", "-")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("submission: %v\n%s", err, out)
	}
	// The backend's reply reaches the client through the proxy.
	queued := regexp.MustCompile(`< 250 2\.0\.0 queued as ([0-9A-F]+)`).FindStringSubmatch(string(out))
	if queued == nil {
		t.Fatalf("no queue id in the reply to DATA:\n%s", out)
	}

	search := func(user, pass, subject string) string {
		var uid string
		waitUntil(t, user+"'s message "+subject, func() bool {
			res := mustCurl(t, user, pass, imap, "-X", `UID SEARCH SUBJECT "`+subject+`"`)
			f := strings.Fields(res)
			if len(f) < 3 {
				return false
			}
			uid = f[2]
			return true
		})
		return mustCurl(t, user, pass, imap+";UID="+uid)
	}
	got := search("bob@example.com", bob, subject)
	if !strings.Contains(got, "Hello Bob.") ||
		!regexp.MustCompile(`(?m)^Received: from \S+ \(\[127\.0\.0\.1\]\)\r?\n\tby 127\.0\.0\.2 \(tohost\) with ESMTPA id `+queued[1]+`;`).MatchString(got) {
		t.Fatalf("bob's message:\n%s", got)
	}
	if own := search("alice@example.com", alice, subject); !strings.Contains(own, "Hello Bob.") {
		t.Fatalf("alice's own copy:\n%s", own)
	}
	bounce := search("alice@example.com", alice, "Undelivered Mail Returned to Sender")
	for _, want := range []string{"Content-Type: multipart/report; report-type=delivery-status",
		"Final-Recipient: rfc822; nobody@example.com", "Status: 5.1.1", "Subject: " + subject} {
		if !strings.Contains(bounce, want) {
			t.Fatalf("the bounce lacks %q:\n%s", want, bounce)
		}
	}
	if strings.Contains(bounce, "bob@example.com;") || strings.Contains(bounce, "rfc822; alice@") {
		t.Fatalf("the bounce names a delivered recipient:\n%s", bounce)
	}

	// Once done, the queues are emptied (the last file goes right after
	// the delivery the reader saw).
	for _, b := range []string{"backend1", "backend2"} {
		q := filepath.Join(dir, b, ".queue")
		waitUntil(t, q+" to empty", func() bool {
			ents, err := os.ReadDir(q)
			return err == nil && len(ents) == 0
		})
	}
	c.stop(t)
}

// waitUntil polls cond until it holds (hang guard: a minute).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
