//go:build !unix

package bench

// cpuTime is not measured on this platform.
func cpuTime() func(turns int) float64 { return func(int) float64 { return 0 } }
