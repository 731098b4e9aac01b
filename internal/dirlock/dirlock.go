// Package dirlock gives a process exclusive ownership of a directory: an
// flock on a lock file in it, released by the kernel when the process
// dies, so a crashed owner never leaves a stale lock behind.
//
//	unlock, err := dirlock.Lock(filepath.Join(dir, "LOCK"))
//	if errors.Is(err, dirlock.ErrLocked) { ... another process owns dir ... }
//	defer unlock()
//
// Where flock is unavailable (non-unix systems) Lock always succeeds.
package dirlock

import "errors"

// ErrLocked is returned when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Lock takes an exclusive, non-blocking lock on path (created if needed).
func Lock(path string) (unlock func() error, err error) { return lock(path) }
