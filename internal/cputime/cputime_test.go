package cputime

import (
	"runtime"
	"testing"
	"time"
)

func TestPerOpCountsWork(t *testing.T) {
	if _, ok := now(); !ok {
		t.Skip("no process CPU time on " + runtime.GOOS)
	}
	per := PerOp()
	// Spin until the process has used at least 20 ms of CPU.
	start, _ := now()
	for {
		if n, _ := now(); n-start >= 20*time.Millisecond {
			break
		}
	}
	us, ok := per(10)
	if !ok || us < 2000 {
		t.Fatalf("per op = %v µs (ok %v), want at least 2000 for 20 ms over 10 ops", us, ok)
	}
	if _, ok := per(0); ok {
		t.Fatal("no operations: want ok false")
	}
}
