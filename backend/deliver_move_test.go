package backend

import (
	"strings"
	"testing"
)

// moveAway points user's tohost at another backend, as tohost user move
// does, while the servers run.
func moveAway(dir *fakeDirectory, user string, fields ...string) {
	dir.set(dirUser(user, append([]string{"tohost", "backend2.example"}, fields...)...))
}

// TestRecheckLMTP: a recipient moved to another backend after its RCPT
// was taken gets 450 for the message and nothing is stored for it; the
// other recipients of the transaction get the message. Both ways of
// storing are covered: streamed, and spooled first (a quota close by).
func TestRecheckLMTP(t *testing.T) {
	for _, tc := range []struct {
		name, moved, stays string
		fields             []string // the moved user's other fields
	}{
		{"streamed", "alice@example.com", "frank@example.com", nil},
		{"spooled", "carol@example.com", "alice2@example.com", []string{"quota", "100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDirectory()
			h := start(t, DeliveryConfig{Directory: dir}, nil)
			c := dialClient(t, h.lmtp)
			c.cmd("LHLO mta.example.org", "250 ")
			c.cmd("MAIL FROM:<sender@example.org>", "250 ")
			c.cmd("RCPT TO:<"+tc.moved+">", "250 ")
			c.cmd("RCPT TO:<"+tc.stays+">", "250 ")
			moveAway(dir, tc.moved, tc.fields...)
			msg := "Subject: m\r\n\r\nx\r\n"
			c.data(msg)
			if l := c.expect("450 4.2.0 <" + tc.moved + ">"); !strings.Contains(l, "moved") {
				t.Errorf("reply %q does not say the mailbox moved", l)
			}
			c.expect("250 2.0.0 <" + tc.stays + ">")
			h.expectMail(tc.moved)
			h.expectMail(tc.stays, msg)
			if got := h.counter("lmtp", outcomeOtherServer); got != 1 {
				t.Errorf("deliveries_total{lmtp,other_backend} = %v, want 1", got)
			}
		})
	}
}

// TestRecheckAfterWholeMessage: the check is made once the message has
// arrived whole, not when DATA begins: a move while the body is still
// coming is seen.
func TestRecheckAfterWholeMessage(t *testing.T) {
	dir := testDirectory()
	h := start(t, DeliveryConfig{Directory: dir}, nil)
	c := dialClient(t, h.lmtp)
	c.cmd("LHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: half\r\n\r\nfirst half")
	moveAway(dir, "alice@example.com")
	c.send("second half\r\n.")
	c.expect("450 4.2.0 <alice@example.com>")
	h.expectMail("alice@example.com")
}

// TestRecheckSMTP: SMTP has one reply for every recipient, so a moved
// recipient refuses the whole message (4xx, stored for nobody): the
// sender's retry must not give the others a second copy. The retry then
// goes through for those who stayed.
func TestRecheckSMTP(t *testing.T) {
	dir := testDirectory()
	h := start(t, DeliveryConfig{Directory: dir}, nil)
	c := dialClient(t, h.smtp)
	c.cmd("EHLO mta.example.org", "250 ")
	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<frank@example.com>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "250 ")
	moveAway(dir, "alice@example.com")
	msg := "Subject: s\r\n\r\nx\r\n"
	c.data(msg)
	if l := c.reply(); !strings.HasPrefix(l, "45") {
		t.Fatalf("DATA with a recipient moved: %q, want 45x", l)
	}
	h.expectMail("frank@example.com")
	h.expectMail("alice@example.com")

	c.cmd("MAIL FROM:<sender@example.org>", "250 ")
	c.cmd("RCPT TO:<frank@example.com>", "250 ")
	c.cmd("RCPT TO:<alice@example.com>", "450 4.2.0 ")
	c.data(msg)
	c.expect("250 ")
	h.expectMail("frank@example.com", msg)
	h.expectMail("alice@example.com")
}
