//go:build unix

package memory

import (
	"syscall"
	"time"
)

// cpuTime starts measuring the process's CPU time (user and system); the
// returned function gives the microseconds used per turn since.
func cpuTime() func(turns int) (float64, bool) {
	read := func() (time.Duration, bool) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, false
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
	}
	before, ok := read()
	return func(turns int) (float64, bool) {
		after, ok2 := read()
		if !ok || !ok2 || turns == 0 {
			return 0, false
		}
		return float64(after-before) / float64(time.Microsecond) / float64(turns), true
	}
}
