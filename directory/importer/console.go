package importer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Summary is the closing line of an import.
func Summary(name, kind string, s Stats) string {
	rate := 0.0
	if sec := s.Elapsed.Seconds(); sec > 0 {
		rate = float64(s.Loaded()) / sec
	}
	var b strings.Builder
	fmt.Fprintf(&b, "import %s (%s) into %s: read %s, imported %s, updated %s, unchanged %s, skipped %s, rejected %s",
		name, s.Format, kind, Group(s.Read), Group(s.Created), Group(s.Updated), Group(s.Unchanged), Group(s.Skipped), Group(s.Rejected))
	if s.Duplicates > 0 {
		fmt.Fprintf(&b, ", duplicates %s", Group(s.Duplicates))
	}
	if s.NotUsers > 0 {
		fmt.Fprintf(&b, ", not users %s", Group(s.NotUsers))
	}
	if s.Deleted > 0 {
		fmt.Fprintf(&b, ", deleted %s", Group(s.Deleted))
	}
	fmt.Fprintf(&b, "; %.2f s, %s users/s", s.Elapsed.Seconds(), Group(int64(rate)))
	return b.String()
}

// Group writes n with thousands separators.
func Group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Plural is the "s" of a count that is not one.
func Plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Console shows an import's reports and progress to a person: a bar on a
// terminal, a line every 10 s otherwise. Its methods fit Options.Report
// and Options.Progress.
type Console struct {
	mu       sync.Mutex
	w        io.Writer
	name     string
	bar      *progressbar.ProgressBar
	lines    bool
	last     time.Time
	checking bool
}

// NewConsole writes to w; mode is auto (a bar when w is a terminal), bar,
// lines or none.
func NewConsole(w io.Writer, in Input, mode string) *Console {
	o := &Console{w: w, name: filepath.Base(in.Name)}
	if in.Name == "-" {
		o.name = "stdin"
	}
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		size := in.Size
		if size <= 0 {
			size = -1
		}
		o.bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetDescription("importing"),
			progressbar.OptionSetRenderBlankState(true))
	case "lines":
		o.lines = true
		o.last = time.Now()
	}
	return o
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Report prints one rejected, duplicate or skipped record.
func (o *Console) Report(r Report) {
	o.Note(o.name + ": " + r.String())
}

// Note prints a line above the bar.
func (o *Console) Note(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bar != nil {
		// Erase the bar's line ourselves: the bar's Clear reads its state
		// without its lock while its own goroutine redraws it (a data
		// race); the bar draws itself again on its next tick.
		fmt.Fprint(o.w, "\r\033[K")
	}
	fmt.Fprintln(o.w, s)
}

// Progress shows how far the import is.
func (o *Console) Progress(p Progress) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Loaded) / s
	}
	switch {
	case o.bar != nil:
		if p.Checking != o.checking { // the dry pass of --strict ends
			o.checking = p.Checking
			o.bar.Reset()
		}
		desc := fmt.Sprintf("%s users, %s users/s", Group(p.Loaded), Group(int64(rate)))
		if p.Checking {
			desc = fmt.Sprintf("checking: %s records", Group(p.Read))
		}
		o.bar.Describe(desc)
		o.bar.Set64(p.Bytes)
	case o.lines && time.Since(o.last) >= 10*time.Second:
		o.last = time.Now()
		pct := ""
		if p.Size > 0 {
			pct = fmt.Sprintf(" (%.0f%% of %s)", 100*float64(p.Bytes)/float64(p.Size), o.name)
		}
		if p.Checking {
			fmt.Fprintf(o.w, "%s: checked %s records%s\n", o.name, Group(p.Read), pct)
			break
		}
		fmt.Fprintf(o.w, "%s: read %s records%s, loaded %s users, %s users/s\n",
			o.name, Group(p.Read), pct, Group(p.Loaded), Group(int64(rate)))
	}
}

// Done ends the bar.
func (o *Console) Done() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bar != nil {
		o.bar.Finish()
		fmt.Fprintln(o.w)
	}
}
