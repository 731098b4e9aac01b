//go:build !unix

package memory

// cpuTime is not measured on this platform.
func cpuTime() func(turns int) (float64, bool) {
	return func(int) (float64, bool) { return 0, false }
}
