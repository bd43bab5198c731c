package imap

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/protocol/authent"
)

// session is one client's IMAP session.
type session struct {
	s    *Server
	c    *conn
	user *userState // after login
	sel  *selected  // in the selected state
}

// selected is the session's view of its selected folder.
type selected struct {
	f         *folderState
	st        *imapserver.SessionTracker
	readOnly  bool
	searchRes imap.UIDSet
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
)

func (s *Server) newSession(ic *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	c, ok := ic.NetConn().(*conn)
	if !ok {
		return nil, nil, errors.New("imap: connection not from Serve")
	}
	return &session{s: s, c: c}, nil, nil
}

// Errors as clients see them.
var (
	errUnavailable = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
		Text: "Temporary failure, try again later"}
	errNotHere = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
		Text: "This account is not served by this server"}
	errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent,
		Text: "No such mailbox"}
	errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate,
		Text: "No such mailbox"}
	errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
		Text: "Mailbox is read-only"}
	errServer = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug,
		Text: "Internal error"}
)

// storeError turns a Store error into a reply.
func (ss *session) storeError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, maildir.ErrNoFolder):
		return errNoMailbox
	case errors.Is(err, maildir.ErrExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, maildir.ErrBadName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Bad mailbox name"}
	case errors.Is(err, maildir.ErrInUse):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Mailbox in use"}
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return err
	}
	ss.s.log.Error("imap: store error", "op", op, "user", ss.userName(), "err", err)
	return errServer
}

func (ss *session) userName() string {
	if ss.user == nil {
		return ""
	}
	return ss.user.name
}

func (ss *session) Close() error {
	if ss.sel != nil {
		ss.Unselect()
	}
	if ss.user != nil {
		ss.s.releaseUser(ss.user)
		ss.user = nil
	}
	return nil
}

// Login checks the user with the directory (with the client's address)
// and lets in only users this backend serves.
func (ss *session) Login(username, password string) error {
	cfg := &ss.s.cfg
	ip := ss.c.ClientIP()
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	log := ss.s.log.With("client", ipStr, "user", username)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CheckTimeout)
	start := time.Now()
	u, err := cfg.Directory.Check(ctx, username, password, ipStr)
	cancel()
	cfg.Metrics.directoryTook(time.Since(start))
	switch {
	case errors.Is(err, authent.ErrBadCredentials) || errors.Is(err, authent.ErrNotFound):
		cfg.Metrics.login(outcomeFailed)
		log.Info("imap login failed")
		return imapserver.ErrAuthFailed
	case err != nil:
		cfg.Metrics.login(outcomeUnavailable)
		log.Warn("imap login: directory unavailable", "err", err)
		return errUnavailable
	}
	if th := u.Get("tohost"); !(home.Rule{Name: ss.s.cfg.Name, AcceptDefault: ss.s.cfg.AcceptDefault, Peers: ss.s.cfg.Peers}).Here(th) {
		cfg.Metrics.login(outcomeRefused)
		log.Warn("imap login refused: user lives elsewhere", "tohost", th)
		return errNotHere
	}
	if err := ss.enter(u, username, log); err != nil {
		return err
	}
	cfg.Metrics.login(outcomeOK)
	log.Info("imap login", "tls", ss.c.tls.Load())
	return nil
}

// enter opens the mailbox of u (named username when the directory gives
// no name) for the session.
func (ss *session) enter(u authent.User, username string, log *slog.Logger) error {
	name := u.Name
	if name == "" {
		name = username
	}
	us, err := ss.s.acquireUser(name)
	if err != nil {
		ss.s.cfg.Metrics.login(outcomeUnavailable)
		log.Error("imap login: mailbox", "err", err)
		if errors.Is(err, maildir.ErrBadName) {
			return imapserver.ErrAuthFailed
		}
		return errUnavailable
	}
	ss.user = us
	ss.c.authed.Store(true)
	return nil
}

// AuthenticateMechanisms: PLAIN only, as LOGIN; it also carries the
// master logins (authorization identity set).
func (ss *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity == "" || identity == username {
			return ss.Login(username, password)
		}
		return ss.masterLogin(identity, username, password)
	}), nil
}

// masterLogin logs in as user with the master credentials: the user must
// be in the directory, wherever its mailbox lives (see Config.MasterUser).
func (ss *session) masterLogin(user, master, password string) error {
	cfg := &ss.s.cfg
	ip := ss.c.ClientIP()
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	log := ss.s.log.With("client", ipStr, "user", user, "master", master)
	if !ss.s.isMaster(master, password) {
		cfg.Metrics.login(outcomeFailed)
		log.Warn("imap master login failed")
		return imapserver.ErrAuthFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CheckTimeout)
	start := time.Now()
	u, err := cfg.Directory.Lookup(ctx, user)
	cancel()
	cfg.Metrics.directoryTook(time.Since(start))
	switch {
	case errors.Is(err, authent.ErrNotFound):
		cfg.Metrics.login(outcomeFailed)
		log.Warn("imap master login failed: no such user")
		return imapserver.ErrAuthFailed
	case err != nil:
		cfg.Metrics.login(outcomeUnavailable)
		log.Warn("imap master login: directory unavailable", "err", err)
		return errUnavailable
	}
	if err := ss.enter(u, user, log); err != nil {
		return err
	}
	cfg.Metrics.login(outcomeMaster)
	log.Info("imap master login", "tohost", u.Get("tohost"), "tls", ss.c.tls.Load())
	return nil
}

// AppendLimit is Config.MaxMessageSize (go-imap refuses larger APPENDs
// before reading them).
func (ss *session) AppendLimit() uint32 { return uint32(ss.s.cfg.MaxMessageSize) }

func (ss *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: delim}}}, nil
}

const delim = '/'

// systemFlags are the flags a Maildir keeps.
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagDraft, imap.FlagFlagged, imap.FlagSeen}

func (ss *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if ss.sel != nil {
		ss.Unselect()
	}
	f, err := ss.user.openFolder(name)
	if err != nil {
		return nil, ss.storeError("select", err)
	}
	f.mu.Lock()
	if err := f.refreshLocked(); err != nil {
		f.mu.Unlock()
		ss.user.closeFolder(f)
		return nil, ss.storeError("select", err)
	}
	defer f.mu.Unlock()
	ss.sel = &selected{f: f, st: f.tracker.NewSession(), readOnly: options.ReadOnly}
	data := &imap.SelectData{
		Flags:          systemFlags,
		PermanentFlags: systemFlags,
		NumMessages:    uint32(len(f.msgs)),
		UIDNext:        imap.UID(f.f.UIDNext()),
		UIDValidity:    f.validity,
	}
	if options.ReadOnly {
		data.PermanentFlags = []imap.Flag{}
	}
	for i, m := range f.msgs {
		if !slices.Contains(m.flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i) + 1
			break
		}
	}
	return data, nil
}

func (ss *session) Unselect() error {
	if ss.sel == nil {
		return nil
	}
	ss.sel.st.Close()
	ss.user.closeFolder(ss.sel.f)
	ss.sel = nil
	return nil
}

func (ss *session) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimRight(name, string(delim))
	return ss.storeError("create", ss.user.mbox.Create(name))
}

func (ss *session) Delete(name string) error {
	if strings.EqualFold(name, "INBOX") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX cannot be deleted"}
	}
	return ss.storeError("delete", ss.user.mbox.Delete(name))
}

func (ss *session) Rename(name, newName string, options *imap.RenameOptions) error {
	newName = strings.TrimRight(newName, string(delim))
	return ss.storeError("rename", ss.user.mbox.Rename(name, newName))
}

func (ss *session) Subscribe(name string) error {
	return ss.storeError("subscribe", ss.user.mbox.Subscribe(name, true))
}

func (ss *session) Unsubscribe(name string) error {
	return ss.storeError("unsubscribe", ss.user.mbox.Subscribe(name, false))
}

// specialUse gives the special-use attribute of the usual top-level
// folder names.
func specialUse(name string) imap.MailboxAttr {
	switch strings.ToLower(name) {
	case "sent":
		return imap.MailboxAttrSent
	case "drafts":
		return imap.MailboxAttrDrafts
	case "trash":
		return imap.MailboxAttrTrash
	case "junk":
		return imap.MailboxAttrJunk
	case "archive":
		return imap.MailboxAttrArchive
	}
	return ""
}

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	folders, err := ss.user.mbox.Folders()
	if err != nil {
		return ss.storeError("list", err)
	}
	subs, err := ss.user.mbox.Subscriptions()
	if err != nil {
		return ss.storeError("list", err)
	}
	subscribed := make(map[string]bool, len(subs))
	for _, s := range subs {
		subscribed[s] = true
	}
	exists := make(map[string]bool, len(folders))
	for _, f := range folders {
		exists[f] = true
	}
	names := folders
	if options.SelectSubscribed {
		names = subs
	}
	for _, name := range names {
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(name, delim, ref, p) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		data := imap.ListData{Mailbox: name, Delim: delim}
		if !exists[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		} else {
			children := false
			for _, f := range folders {
				if strings.HasPrefix(f, name+"/") {
					children = true
					break
				}
			}
			if children {
				data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
			} else {
				data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
			}
		}
		if subscribed[name] && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		su := specialUse(name)
		if options.SelectSpecialUse && su == "" {
			continue
		}
		if su != "" && exists[name] {
			data.Attrs = append(data.Attrs, su)
		}
		if options.ReturnStatus != nil && exists[name] {
			if st, err := ss.Status(name, options.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mf, err := ss.user.mbox.Folder(name)
	if err != nil {
		return nil, ss.storeError("status", err)
	}
	var msgs []*message
	var uidNext, validity uint32
	if f := ss.user.openedFolder(mf.Name()); f != nil {
		f.mu.Lock()
		err = f.refreshLocked()
		msgs, uidNext, validity = slices.Clone(f.msgs), f.f.UIDNext(), f.validity
		f.mu.Unlock()
	} else {
		var ms []maildir.Message
		ms, err = mf.Sync()
		for _, m := range ms {
			msgs = append(msgs, newMessage(m))
		}
		uidNext, validity = mf.UIDNext(), mf.UIDValidity()
	}
	if err != nil {
		return nil, ss.storeError("status", err)
	}
	data := &imap.StatusData{Mailbox: mf.Name()}
	count := func(flag imap.Flag) *uint32 {
		var n uint32
		for _, m := range msgs {
			if slices.Contains(m.flags, flag) {
				n++
			}
		}
		return &n
	}
	if options.NumMessages {
		n := uint32(len(msgs))
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(uidNext)
	}
	if options.UIDValidity {
		data.UIDValidity = validity
	}
	if options.NumUnseen {
		n := uint32(len(msgs)) - *count(imap.FlagSeen)
		data.NumUnseen = &n
	}
	if options.NumDeleted {
		data.NumDeleted = count(imap.FlagDeleted)
	}
	if options.Size {
		var size int64
		for _, m := range msgs {
			size += m.size
		}
		data.Size = &size
	}
	if options.NumRecent {
		n := uint32(0)
		data.NumRecent = &n
	}
	if options.AppendLimit {
		n := ss.AppendLimit()
		data.AppendLimit = &n
	}
	return data, nil
}

func (ss *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mf, err := ss.user.mbox.Folder(name)
	if errors.Is(err, maildir.ErrNoFolder) {
		return nil, errTryCreate
	} else if err != nil {
		return nil, ss.storeError("append", err)
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	uid, err := mf.Append(r, storeFlags(options.Flags), date)
	if err != nil {
		return nil, ss.storeError("append", err)
	}
	data := &imap.AppendData{UID: imap.UID(uid), UIDValidity: mf.UIDValidity()}
	ss.refreshOpened(mf.Name())
	return data, nil
}

// refreshOpened syncs a folder that sessions have selected, so they hear
// of a change at once rather than at the Store's notification.
func (ss *session) refreshOpened(canon string) {
	if f := ss.user.openedFolder(canon); f != nil {
		f.mu.Lock()
		f.refreshLocked()
		f.mu.Unlock()
	}
}

// storeFlags keeps the flags a Maildir can keep.
func storeFlags(flags []imap.Flag) []string {
	var out []string
	for _, f := range flags {
		for _, sf := range systemFlags {
			if strings.EqualFold(string(f), string(sf)) {
				out = append(out, string(sf))
			}
		}
	}
	return out
}

func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.sel == nil {
		return nil
	}
	f := ss.sel.f
	f.mu.Lock()
	err := f.refreshLocked()
	f.mu.Unlock()
	if err != nil {
		ss.s.log.Warn("imap: sync", "user", ss.userName(), "folder", f.name, "err", err)
	}
	return ss.sel.st.Poll(w, allowExpunge)
}

func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if ss.sel == nil {
		<-stop
		return nil
	}
	// Not SessionTracker.Idle: an update queued between a Poll and its
	// start would wait for the next one. The channel is taken before each
	// Poll, so whatever is queued after the Poll closes it.
	f := ss.sel.f
	f.idlers.Add(1)
	defer f.idlers.Add(-1)
	f.mu.Lock()
	err := f.refreshLocked()
	f.mu.Unlock()
	if err != nil {
		ss.s.log.Warn("imap: sync", "user", ss.userName(), "folder", f.name, "err", err)
	}
	for {
		changed := f.changes()
		if err := ss.sel.st.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-changed:
		}
	}
}

func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if ss.sel.readOnly {
		return nil // CLOSE of an EXAMINEd mailbox; EXPUNGE there does nothing
	}
	f := ss.sel.f
	f.mu.Lock()
	defer f.mu.Unlock()
	var gone []uint32
	for _, m := range f.msgs {
		if uids != nil && !uids.Contains(m.uid) {
			continue
		}
		if slices.Contains(m.flags, imap.FlagDeleted) {
			gone = append(gone, uint32(m.uid))
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := f.f.Expunge(gone); err != nil {
		return ss.storeError("expunge", err)
	}
	return ss.storeError("expunge", f.refreshLocked())
}

// target is a message a command works on: its sequence number in the
// client's view and a copy of its state.
type target struct {
	seq   uint32 // client view
	sseq  uint32 // server view
	uid   imap.UID
	flags []imap.Flag
	size  int64
	date  time.Time
	msg   *message // the shared state, for what is cached of the message
}

// targetsLocked resolves a sequence or UID set, under f.mu.
func (sl *selected) targetsLocked(numSet imap.NumSet) []target {
	f := sl.f
	numSet = sl.staticNumSet(numSet)
	var out []target
	switch set := numSet.(type) {
	case imap.SeqSet:
		for i, m := range f.msgs {
			seq := sl.st.EncodeSeqNum(uint32(i) + 1)
			if seq != 0 && set.Contains(seq) {
				out = append(out, target{seq: seq, sseq: uint32(i) + 1, uid: m.uid, flags: slices.Clone(m.flags), size: m.size, date: m.date, msg: m})
			}
		}
	case imap.UIDSet:
		for i, m := range f.msgs {
			if set.Contains(m.uid) {
				seq := sl.st.EncodeSeqNum(uint32(i) + 1)
				if seq == 0 {
					continue
				}
				out = append(out, target{seq: seq, sseq: uint32(i) + 1, uid: m.uid, flags: slices.Clone(m.flags), size: m.size, date: m.date, msg: m})
			}
		}
	}
	return out
}

// staticNumSet replaces "*" with the largest number and "$" with the saved
// search result (as go-imap's imapmemserver does).
func (sl *selected) staticNumSet(numSet imap.NumSet) imap.NumSet {
	if imap.IsSearchRes(numSet) {
		return sl.searchRes
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		set = slices.Clone(set)
		max := uint32(len(sl.f.msgs))
		for i := range set {
			staticRange(&set[i].Start, &set[i].Stop, max)
		}
		return set
	case imap.UIDSet:
		set = slices.Clone(set)
		var max uint32
		if n := len(sl.f.msgs); n > 0 {
			max = uint32(sl.f.msgs[n-1].uid)
		}
		for i := range set {
			staticRange((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), max)
		}
		return set
	}
	return numSet
}

func staticRange(start, stop *uint32, max uint32) {
	dyn := false
	if *start == 0 {
		*start, dyn = max, true
	}
	if *stop == 0 {
		*stop, dyn = max, true
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}

func (ss *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if ss.sel.readOnly {
		return errReadOnly
	}
	sl := ss.sel
	f := sl.f
	f.mu.Lock()
	ts := sl.targetsLocked(numSet)
	var err error
	for i := range ts {
		t := &ts[i]
		nf := applyStore(t.flags, flags)
		if slices.Equal(nf, t.flags) {
			continue
		}
		if e := f.f.SetFlags(uint32(t.uid), flagStrings(nf)); e != nil {
			if !errors.Is(e, maildir.ErrNoMessage) && err == nil {
				err = e
			}
			continue
		}
		t.flags = nf
		f.msgs[t.sseq-1].flags = slices.Clone(nf)
		f.tracker.QueueMessageFlags(t.sseq, t.uid, slices.Clone(nf), sl.st)
		f.changedLocked()
	}
	f.mu.Unlock()
	if err != nil {
		return ss.storeError("store", err)
	}
	if flags.Silent {
		return nil
	}
	for _, t := range ts {
		rw := w.CreateMessage(t.seq)
		rw.WriteUID(t.uid)
		rw.WriteFlags(t.flags)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// applyStore returns flags changed as STORE says, system flags only.
func applyStore(cur []imap.Flag, st *imap.StoreFlags) []imap.Flag {
	want := make(map[imap.Flag]bool)
	for _, f := range storeFlags(st.Flags) {
		want[imap.Flag(f)] = true
	}
	var out []imap.Flag
	switch st.Op {
	case imap.StoreFlagsSet:
		for f := range want {
			out = append(out, f)
		}
	case imap.StoreFlagsAdd:
		out = slices.Clone(cur)
		for f := range want {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	case imap.StoreFlagsDel:
		for _, f := range cur {
			if !want[f] {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	if out == nil {
		out = []imap.Flag{}
	}
	return out
}

func flagStrings(fl []imap.Flag) []string {
	out := make([]string, len(fl))
	for i, f := range fl {
		out[i] = string(f)
	}
	return out
}

func (ss *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := ss.copy(numSet, dest)
	return data, err
}

// copy copies the messages to dest and returns the COPYUID data and the
// source UIDs copied.
func (ss *session) copy(numSet imap.NumSet, dest string) (*imap.CopyData, []uint32, error) {
	sl := ss.sel
	df, err := ss.user.mbox.Folder(dest)
	if errors.Is(err, maildir.ErrNoFolder) {
		return nil, nil, errTryCreate
	} else if err != nil {
		return nil, nil, ss.storeError("copy", err)
	}
	sl.f.mu.Lock()
	ts := sl.targetsLocked(numSet)
	sl.f.mu.Unlock()
	uids := make([]uint32, len(ts))
	for i, t := range ts {
		uids[i] = uint32(t.uid)
	}
	if len(uids) == 0 {
		return nil, nil, nil // nothing to copy: no COPYUID
	}
	m, err := sl.f.f.CopyTo(uids, df)
	if err != nil {
		return nil, nil, ss.storeError("copy", err)
	}
	data := &imap.CopyData{UIDValidity: df.UIDValidity()}
	var copied []uint32
	for _, u := range uids {
		if nu, ok := m[u]; ok {
			data.SourceUIDs.AddNum(imap.UID(u))
			data.DestUIDs.AddNum(imap.UID(nu))
			copied = append(copied, u)
		}
	}
	ss.refreshOpened(df.Name())
	return data, copied, nil
}

func (ss *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if ss.sel.readOnly {
		return errReadOnly
	}
	data, moved, err := ss.copy(numSet, dest)
	if err != nil {
		return err
	}
	if len(moved) == 0 {
		return nil
	}
	{
		f := ss.sel.f
		f.mu.Lock()
		err = f.f.Expunge(moved)
		if err == nil {
			err = f.refreshLocked()
		}
		f.mu.Unlock()
		if err != nil {
			return ss.storeError("move", err)
		}
	}
	// The EXPUNGEs follow, from the tracker, when go-imap polls.
	return w.WriteCopyData(data)
}
