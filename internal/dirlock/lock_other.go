//go:build !unix

package dirlock

// lock is a no-op where flock is unavailable: run one process per
// directory.
func lock(string) (func() error, error) { return func() error { return nil }, nil }
