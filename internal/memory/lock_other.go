//go:build !unix

package memory

// lockDir is a no-op where flock is unavailable: run one process per
// directory.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
