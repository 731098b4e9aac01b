package dirlock_test

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/internal/dirlock"
)

// A second lock on the same file fails at once, naming the holder; after
// unlock it succeeds. flock locks are per open file description, so two
// opens in one process conflict as two processes do.
func TestLockIsExclusive(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no flock")
	}
	p := filepath.Join(t.TempDir(), "LOCK")
	unlock, err := dirlock.Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Lock(p)
	if !errors.Is(err, dirlock.ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second lock: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	again, err := dirlock.Lock(p)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	_ = again()
}
