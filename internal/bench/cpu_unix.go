//go:build unix

package bench

import (
	"syscall"
	"time"
)

// cpuTime starts measuring the process's CPU time; the returned function
// gives the microseconds used per turn since (0 where it cannot be read).
func cpuTime() func(turns int) float64 {
	read := func() (time.Duration, bool) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, false
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
	}
	before, ok := read()
	return func(turns int) float64 {
		after, ok2 := read()
		if !ok || !ok2 || turns == 0 {
			return 0
		}
		return float64((after - before).Microseconds()) / float64(turns)
	}
}
