package queue

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// maxHeaderBytes bounds the original header a bounce returns.
const maxHeaderBytes = 64 << 10

// bounce tells the sender of env about its failed recipients not yet
// notified: one delivery status notification (RFC 3464) naming them all,
// queued from the null sender like any message. A message from the null
// sender (a bounce itself) is never bounced: its failures are logged and
// dropped, so that two servers cannot bounce bounces to each other.
func (q *Queue) bounce(env *Envelope) error {
	idx := env.unnotified()
	if len(idx) == 0 {
		return nil
	}
	if env.From == "" {
		for _, i := range idx {
			q.log.Warn("queue: failure of a message from the null sender dropped", "id", env.ID,
				"rcpt", env.Recipients[i].Addr, "reply", env.Recipients[i].Reply)
			env.Recipients[i].Notified = true
		}
		return nil
	}
	header, err := q.originalHeader(env.ID)
	if err != nil {
		return err
	}
	id := NewID()
	msg := q.dsn(env, idx, header, id, time.Now())
	// Queued before the envelope says so: a crash in between sends the
	// bounce twice rather than never.
	if err := q.Enqueue(id, "", []string{env.From}, bytes.NewReader(msg)); err != nil {
		return err
	}
	for _, i := range idx {
		env.Recipients[i].Notified = true
	}
	q.cfg.Metrics.bounced()
	q.log.Info("queue: bounce queued", "id", env.ID, "bounce", id, "to", env.From, "rcpts", len(idx))
	return nil
}

// originalHeader reads the header of the queued message (up to the empty
// line, at most maxHeaderBytes, in whole lines).
func (q *Queue) originalHeader(id string) ([]byte, error) {
	f, err := os.Open(q.spool.msgPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	r := bufio.NewReader(io.LimitReader(f, maxHeaderBytes))
	for {
		line, err := r.ReadString('\n')
		if !strings.HasSuffix(line, "\n") || strings.TrimRight(line, "\r\n") == "" {
			break // the end of the header, or a line cut by the limit
		}
		b.WriteString(strings.TrimRight(line, "\r\n") + "\r\n")
		if err != nil {
			break
		}
	}
	return b.Bytes(), nil
}

// dsn writes the bounce: a multipart/report (RFC 6522) of a human
// readable part, the message/delivery-status part (RFC 3464) and the
// original header (text/rfc822-headers).
func (q *Queue) dsn(env *Envelope, idx []int, header []byte, id string, now time.Time) []byte {
	host := q.cfg.Hostname
	boundary := "=_" + id
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", addressLiteral(host))
	w("To: <%s>", env.From)
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s@%s>", id, addressLiteral(host))
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w(`Content-Type: multipart/report; report-type=delivery-status; boundary="%s"`, boundary)
	w("")
	w("This is a MIME-encapsulated message.")
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	w("This is the mail system at %s.", host)
	w("")
	w("Your message (queue id %s) could not be delivered to the recipients below.", env.ID)
	w("")
	for _, i := range idx {
		rc := env.Recipients[i]
		w("<%s>: %s", rc.Addr, humanReason(rc, q.cfg.Lifetime))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", host)
	w("X-Queue-ID: %s", env.ID)
	w("Arrival-Date: %s", env.Created.Format(time.RFC1123Z))
	for _, i := range idx {
		rc := env.Recipients[i]
		w("")
		w("Final-Recipient: rfc822; %s", rc.Addr)
		w("Action: failed")
		w("Status: %s", dsnStatus(rc))
		if rc.Reply != "" {
			w("Diagnostic-Code: smtp; %s", rc.Reply)
		}
		w("Last-Attempt-Date: %s", now.Format(time.RFC1123Z))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
	w("")
	b.Write(header)
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

// dsnStatus is a failed recipient's Status field: the enhanced code of
// the relay's reply; 4.4.7 (delivery time expired, RFC 3463) for an
// expired one; else 5.0.0.
func dsnStatus(rc Recipient) string {
	if rc.Expired {
		return "4.4.7"
	}
	if f := strings.Fields(rc.Reply); len(f) > 1 && len(f[0]) == 3 && f[0][0] == '5' && isEnhanced(f[1]) {
		return f[1]
	}
	return "5.0.0"
}

func humanReason(rc Recipient, lifetime time.Duration) string {
	if rc.Expired {
		reason := "gave up after " + lifetime.String()
		if rc.Reply != "" {
			reason += "; last reply: " + rc.Reply
		}
		return reason
	}
	return rc.Reply
}

// isEnhanced reports whether s is an enhanced status code "c.s.d".
func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
