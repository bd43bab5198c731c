package authent

// MaxErrLine caps a -ERR or -DEAD line (without its line ending): NetWin's
// protocol asks for failure replies under 100 bytes.
const MaxErrLine = 99

// Reply builds reply lines into a byte slice. The zero value ends lines
// with CRLF (TCP); set LF for module mode on stdin/stdout.
type Reply struct {
	Buf []byte
	LF  bool
}

func (r *Reply) eol() {
	if r.LF {
		r.Buf = append(r.Buf, '\n')
	} else {
		r.Buf = append(r.Buf, '\r', '\n')
	}
}

// OK writes `+OK text`, or `+OK` when text is empty.
func (r *Reply) OK(text string) {
	r.Buf = append(r.Buf, "+OK"...)
	if text != "" {
		r.Buf = append(r.Buf, ' ')
		r.Buf = append(r.Buf, text...)
	}
	r.eol()
}

// Data writes one `+DATA text` line.
func (r *Reply) Data(text string) {
	r.Buf = append(r.Buf, "+DATA "...)
	r.Buf = append(r.Buf, text...)
	r.eol()
}

// Err writes `-ERR text`, cut to MaxErrLine bytes.
func (r *Reply) Err(text string) { r.fail("-ERR ", text) }

// Dead writes `-DEAD text`, cut to MaxErrLine bytes.
func (r *Reply) Dead(text string) { r.fail("-DEAD ", text) }

// ErrUser writes `-ERR <user> text`, cut to MaxErrLine bytes.
func (r *Reply) ErrUser(user, text string) {
	start := len(r.Buf)
	r.Buf = append(r.Buf, "-ERR "...)
	r.Buf = append(r.Buf, user...)
	r.Buf = append(r.Buf, ' ')
	r.Buf = append(r.Buf, text...)
	r.cap(start)
	r.eol()
}

func (r *Reply) fail(status, text string) {
	start := len(r.Buf)
	r.Buf = append(r.Buf, status...)
	r.Buf = append(r.Buf, text...)
	r.cap(start)
	r.eol()
}

// cap cuts the line that began at start to MaxErrLine bytes, never inside a
// UTF-8 sequence.
func (r *Reply) cap(start int) {
	if len(r.Buf)-start <= MaxErrLine {
		return
	}
	end := start + MaxErrLine
	for end > start && r.Buf[end]&0xC0 == 0x80 {
		end--
	}
	r.Buf = r.Buf[:end]
}

// BeginUser starts the check/lookup success line `+OK <user> config 0`;
// append fields with AddField, then finish with EndLine.
func (r *Reply) BeginUser(user string) {
	r.Buf = append(r.Buf, "+OK "...)
	r.Buf = append(r.Buf, user...)
	r.Buf = append(r.Buf, " config 0"...)
}

// AddField appends ` label="value"` to the current line.
func (r *Reply) AddField(label, value string) { r.Buf = AppendField(r.Buf, label, value) }

// EndLine ends the current line.
func (r *Reply) EndLine() { r.eol() }
