package replay

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// Progress writes "\r  12345/100000 events" to a terminal while a replay
// runs, at most every Interval. It is silent unless enabled, so a replay
// piped to a file or another program never gets progress noise. It is safe
// for concurrent use.
type Progress struct {
	// Interval is the minimum time between two updates. Default 100ms
	// (set by NewProgress).
	Interval time.Duration

	mu          sync.Mutex
	w           io.Writer
	enabled     bool
	read, total uint64
	last        time.Time
	wrote       bool
	now         func() time.Time
}

// NewProgress returns a Progress writing to w when enabled is true.
func NewProgress(w io.Writer, enabled bool) *Progress {
	return &Progress{Interval: 100 * time.Millisecond, w: w, enabled: enabled, now: time.Now}
}

// TerminalProgress returns a Progress on f that is enabled only when f is a
// terminal (typically os.Stderr).
func TerminalProgress(f *os.File) *Progress {
	fd := f.Fd()
	return NewProgress(f, isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd))
}

// Enabled reports whether p writes anything.
func (p *Progress) Enabled() bool { return p.enabled }

// Update records that read of about total events were read; it has the
// signature of [Options.Progress].
func (p *Progress) Update(read, total uint64) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.read, p.total = read, max(total, read)
	if now := p.now(); !p.wrote || now.Sub(p.last) >= p.Interval {
		p.last = now
		p.write()
	}
}

// Finish writes the final count and ends the line, if anything was written.
func (p *Progress) Finish() {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wrote {
		p.write()
		fmt.Fprint(p.w, "\n")
	}
}

func (p *Progress) write() {
	p.wrote = true
	fmt.Fprintf(p.w, "\r  %d/%d events", p.read, p.total)
}
