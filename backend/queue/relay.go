package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/emersion/go-smtp"
)

// deferred is the outcome of a recipient to try again later; it is not a
// state of its own (the recipient stays Pending).
const deferred = "deferred"

// outcome is what an attempt learnt of one recipient; status "" when the
// recipient was not tried.
type outcome struct{ status, reply string }

// deliver makes one attempt at the pending recipients of env over one
// connection to the relay, and returns an outcome per recipient (by index
// in env.Recipients). A relay that answers 452 4.5.3 to a recipient (the
// tohost proxy does for a recipient of another backend than the
// transaction's first; any MTA for too many recipients) gets that
// recipient in a new transaction right after, until none is left.
func (q *Queue) deliver(ctx context.Context, env *Envelope) []outcome {
	out := make([]outcome, len(env.Recipients))
	var todo []int
	for i, r := range env.Recipients {
		if r.Status == Pending {
			todo = append(todo, i)
		}
	}
	c, err := q.dial(ctx)
	if err != nil {
		q.setAll(ctx, out, todo, deferred, q.relayError(err))
		return out
	}
	defer c.Close()
	for len(todo) > 0 {
		again, ok := q.transaction(ctx, c, env, todo, out)
		if !ok {
			return out
		}
		todo = again
	}
	c.Quit()
	return out
}

// dial connects to the relay and says EHLO; ctx's end closes the
// connection, breaking off whatever command is under way.
func (q *Queue) dial(ctx context.Context) (*smtp.Client, error) {
	d := net.Dialer{Timeout: q.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", q.cfg.Relay)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c := smtp.NewClient(&afterConn{Conn: conn, stop: stop})
	c.CommandTimeout = q.cfg.Timeout
	c.SubmissionTimeout = q.cfg.Timeout
	if err := c.Hello(addressLiteral(q.cfg.Hostname)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// afterConn is the relay connection; closing it stops watching the context.
type afterConn struct {
	net.Conn
	stop func() bool
}

func (c *afterConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// transaction sends the message to the recipients todo in one
// transaction and sets their outcomes. It returns the recipients to send
// again at once (452 4.5.3), and false when the connection is lost.
func (q *Queue) transaction(ctx context.Context, c *smtp.Client, env *Envelope, todo []int, out []outcome) (again []int, ok bool) {
	size := int64(0)
	if fi, err := os.Stat(q.spool.msgPath(env.ID)); err == nil {
		size = fi.Size()
	}
	if err := c.Mail(env.From, &smtp.MailOptions{Size: size}); err != nil {
		return nil, q.failed(ctx, out, todo, err)
	}
	var accepted []int
	for k, i := range todo {
		err := c.Rcpt(env.Recipients[i].Addr, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.As(err, &se) && se.Code == 452 && se.EnhancedCode == smtp.EnhancedCode{4, 5, 3}:
			again = append(again, i)
			out[i] = outcome{deferred, reply(se)}
		case errors.As(err, &se):
			out[i] = outcome{class(se), reply(se)}
		default:
			return nil, q.failed(ctx, out, append(accepted, todo[k:]...), err)
		}
	}
	if len(accepted) == 0 {
		// Nobody taken: a new transaction would get the same answers, so
		// the 452s wait for the next attempt like any 4xx.
		return nil, q.failed(ctx, out, nil, c.Reset())
	}
	text, err := q.data(c, env.ID)
	if err != nil {
		return nil, q.failed(ctx, out, accepted, err)
	}
	for _, i := range accepted {
		out[i] = outcome{Delivered, "250 " + strings.Join(strings.Fields(text), " ")}
	}
	return again, true
}

// data sends the message file and returns the text of the relay's 250.
func (q *Queue) data(c *smtp.Client, id string) (string, error) {
	f, err := os.Open(q.spool.msgPath(id))
	if err != nil {
		// Our own disk failed: the relay must not get an empty message;
		// dropping the connection (not a reply) leaves them pending.
		c.Close()
		return "", err
	}
	defer f.Close()
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, f); err != nil {
		c.Close() // never end a message that was not sent whole
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// failed sets the outcome of the recipients idx for err: the relay's own
// reply (5xx failed, else deferred), or deferred when the connection
// failed. It reports whether the connection can go on.
func (q *Queue) failed(ctx context.Context, out []outcome, idx []int, err error) bool {
	if err == nil {
		return true
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		for _, i := range idx {
			out[i] = outcome{class(se), reply(se)}
		}
		return true
	}
	q.setAll(ctx, out, idx, deferred, q.relayError(err))
	return false
}

// setAll sets the outcome of the recipients idx, unless ctx is done: then
// the failure is the stop's, not the relay's, and they were not tried.
func (q *Queue) setAll(ctx context.Context, out []outcome, idx []int, status, reply string) {
	if ctx.Err() != nil {
		return
	}
	for _, i := range idx {
		out[i] = outcome{status, reply}
	}
}

// addressLiteral writes an IP address as EHLO and mail domains want it
// ([192.0.2.1], RFC 5321 4.1.3); a name stays as it is.
func addressLiteral(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() {
			return "[" + a.String() + "]"
		}
		return "[IPv6:" + a.String() + "]"
	}
	return host
}

func (q *Queue) relayError(err error) string {
	return "451 4.4.1 relay " + q.cfg.Relay + ": " + err.Error()
}

// class is the outcome of a relay's reply: 5xx fails, the rest is tried again.
func class(se *smtp.SMTPError) string {
	if se.Code/100 == 5 {
		return Failed
	}
	return deferred
}

// reply writes an SMTP reply on one line, as logs and bounces quote it.
func reply(se *smtp.SMTPError) string {
	msg := strings.Join(strings.Fields(se.Message), " ")
	if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode == (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d %s", se.Code, msg)
	}
	e := se.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], msg)
}
