// Package cputime measures the CPU time the process uses (user and system,
// every goroutine), for benchmarks: on a shared machine it is steadier
// than throughput.
package cputime

// PerOp starts measuring; the returned function gives the microseconds of
// CPU used per operation since (ok is false for no operations, or where
// the process's CPU time cannot be read).
func PerOp() func(ops int) (us float64, ok bool) {
	before, ok := now()
	return func(ops int) (float64, bool) {
		after, ok2 := now()
		if !ok || !ok2 || ops <= 0 {
			return 0, false
		}
		return float64((after - before).Nanoseconds()) / 1e3 / float64(ops), true
	}
}
