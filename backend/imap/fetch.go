package imap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/tohost/tohost/backend/maildir"
)

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sl := ss.sel
	f := sl.f
	markSeen := false
	if !sl.readOnly {
		for _, bs := range options.BodySection {
			if !bs.Peek {
				markSeen = true
			}
		}
		if len(options.BinarySection) > 0 {
			for _, bs := range options.BinarySection {
				if !bs.Peek {
					markSeen = true
				}
			}
		}
	}
	f.mu.Lock()
	ts := sl.targetsLocked(numSet)
	seen := make([]bool, len(ts)) // \Seen set by this FETCH: FLAGS go out with it
	if markSeen {
		for i := range ts {
			t := &ts[i]
			if slices.Contains(t.flags, imap.FlagSeen) {
				continue
			}
			nf := append(slices.Clone(t.flags), imap.FlagSeen)
			slices.Sort(nf)
			if err := f.f.SetFlags(uint32(t.uid), flagStrings(nf)); err != nil {
				continue // gone: the FETCH still answers from what it has
			}
			t.flags = nf
			seen[i] = true
			f.msgs[t.sseq-1].flags = slices.Clone(nf)
			f.tracker.QueueMessageFlags(t.sseq, t.uid, slices.Clone(nf), sl.st)
			f.changedLocked()
		}
	}
	f.mu.Unlock()

	for i, t := range ts {
		if err := ss.fetchOne(w, &t, options, seen[i]); err != nil {
			return err
		}
	}
	return nil
}

// needsFile reports whether a FETCH of t reads the message itself.
func needsFile(t *target, o *imap.FetchOptions) bool {
	return o.Envelope && cachedEnvelope(t) == nil || o.BodyStructure != nil || len(o.BodySection) > 0 ||
		len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// cachedEnvelope returns t's envelope if a FETCH parsed it before.
func cachedEnvelope(t *target) *imap.Envelope {
	if t.msg == nil {
		return nil
	}
	return t.msg.envelope.Load()
}

func (ss *session) fetchOne(w *imapserver.FetchWriter, t *target, options *imap.FetchOptions, seen bool) error {
	var file *os.File
	size := t.size
	if needsFile(t, options) {
		var err error
		file, err = ss.sel.f.f.Open(uint32(t.uid))
		if errors.Is(err, maildir.ErrNoMessage) {
			return nil // expunged meanwhile: nothing to say about it
		} else if err != nil {
			return ss.storeError("fetch", err)
		}
		defer file.Close()
		if fi, err := file.Stat(); err == nil {
			size = fi.Size()
		}
	}
	rw := w.CreateMessage(t.seq)
	rw.WriteUID(t.uid)
	if options.Flags || seen {
		rw.WriteFlags(t.flags)
	}
	if options.InternalDate {
		rw.WriteInternalDate(t.date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(t.size)
	}
	var whole []byte // the message, read once when a part needs parsing
	load := func() []byte {
		if whole == nil {
			whole = make([]byte, 0, size)
			b := bytes.NewBuffer(whole)
			b.ReadFrom(io.NewSectionReader(file, 0, 1<<62))
			whole = b.Bytes()
		}
		return whole
	}
	if options.Envelope {
		env := cachedEnvelope(t)
		if env == nil {
			env = &imap.Envelope{}
			h, err := textproto.ReadHeader(bufio.NewReader(io.NewSectionReader(file, 0, size)))
			if err == nil {
				env = imapserver.ExtractEnvelope(h)
				if t.msg != nil {
					t.msg.envelope.Store(env)
				}
			}
		}
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(load())))
	}
	for _, bs := range options.BodySection {
		if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 {
			// The whole message: straight from the file.
			off, n := partialRange(size, bs.Partial)
			wc := rw.WriteBodySection(bs, n)
			_, err := io.CopyN(wc, io.NewSectionReader(file, off, n), n) // a buffer of n bytes, not 32 KiB
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			continue
		}
		buf := imapserver.ExtractBodySection(bytes.NewReader(load()), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		buf := imapserver.ExtractBinarySection(bytes.NewReader(load()), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(load()), bss))
	}
	return rw.Close()
}

// partialRange is the byte range of a message of size n that a partial
// FETCH asks for (all of it without one).
func partialRange(n int64, p *imap.SectionPartial) (off, size int64) {
	if p == nil {
		return 0, n
	}
	if p.Offset >= n {
		return n, 0
	}
	size = n - p.Offset
	if p.Size < size {
		size = p.Size
	}
	return p.Offset, size
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

func (ss *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sl := ss.sel
	f := sl.f
	f.mu.Lock()
	staticCriteria(sl, criteria)
	ts := make([]target, 0, len(f.msgs))
	for i, m := range f.msgs {
		seq := sl.st.EncodeSeqNum(uint32(i) + 1)
		ts = append(ts, target{seq: seq, sseq: uint32(i) + 1, uid: m.uid, flags: slices.Clone(m.flags), size: m.size, date: m.date})
	}
	f.mu.Unlock()

	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i := range ts {
		t := &ts[i]
		c := &searchMsg{t: t, open: func() (io.ReadCloser, error) { return f.f.Open(uint32(t.uid)) }}
		if !c.match(criteria) {
			continue
		}
		uidSet.AddNum(t.uid)
		var num uint32
		switch kind {
		case imapserver.NumKindSeq:
			if t.seq == 0 {
				continue
			}
			seqSet.AddNum(t.seq)
			num = t.seq
		case imapserver.NumKindUID:
			num = uint32(t.uid)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		sl.searchRes = uidSet
	}
	return &data, nil
}

// staticCriteria makes the sets of criteria static (imapmemserver's way).
func staticCriteria(sl *selected, c *imap.SearchCriteria) {
	seqs := make([]imap.SeqSet, 0, len(c.SeqNum))
	for _, s := range c.SeqNum {
		switch ns := sl.staticNumSet(s).(type) {
		case imap.SeqSet:
			seqs = append(seqs, ns)
		case imap.UIDSet: // SEARCHRES
			c.UID = append(c.UID, ns)
		}
	}
	c.SeqNum = seqs
	for i, s := range c.UID {
		c.UID[i] = sl.staticNumSet(s).(imap.UIDSet)
	}
	for i := range c.Not {
		staticCriteria(sl, &c.Not[i])
	}
	for i := range c.Or {
		staticCriteria(sl, &c.Or[i][0])
		staticCriteria(sl, &c.Or[i][1])
	}
}

// searchMsg matches one message against SEARCH criteria, reading the
// message only when a criterion needs its content (after go-imap's
// imapmemserver).
type searchMsg struct {
	t    *target
	open func() (io.ReadCloser, error)
	buf  []byte
	err  error
}

func (m *searchMsg) content() []byte {
	if m.buf == nil && m.err == nil {
		var rc io.ReadCloser
		rc, m.err = m.open()
		if m.err == nil {
			m.buf, m.err = io.ReadAll(rc)
			rc.Close()
		}
	}
	return m.buf
}

func (m *searchMsg) entity() *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(m.content()))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (m *searchMsg) match(c *imap.SearchCriteria) bool {
	t := m.t
	for _, s := range c.SeqNum {
		if t.seq == 0 || !s.Contains(t.seq) {
			return false
		}
	}
	for _, s := range c.UID {
		if !s.Contains(t.uid) {
			return false
		}
	}
	if !matchDate(t.date, c.Since, c.Before) {
		return false
	}
	for _, fl := range c.Flag {
		if !hasFlag(t.flags, fl) {
			return false
		}
	}
	for _, fl := range c.NotFlag {
		if hasFlag(t.flags, fl) {
			return false
		}
	}
	if c.Larger != 0 && t.size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && t.size >= c.Smaller {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h := mail.Header{Header: m.entity().Header}
		for _, hc := range c.Header {
			if !matchHeaderFields(h.FieldsByKey(hc.Key), hc.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			d, err := h.Date()
			if err != nil || !matchDate(d, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Text {
		if !matchEntity(m.entity(), text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !matchEntity(m.entity(), body, false) {
			return false
		}
	}
	for i := range c.Not {
		if m.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !m.match(&c.Or[i][0]) && !m.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// matchDate compares dates without their zones (RFC 3501).
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}

func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, includeHeader bool) bool {
	if pattern == "" {
		return true
	}
	if includeHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, includeHeader) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil && t == "" {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(e.Body)
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), bytes.ToLower([]byte(pattern)))
}
