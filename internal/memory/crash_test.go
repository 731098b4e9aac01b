package memory

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashEnvBackend = "AGENTBUS_MEMORY_CRASH_BACKEND"
	crashEnvDir     = "AGENTBUS_MEMORY_CRASH_DIR"
)

// TestCrashChild is the child of TestCrashSafety: it appends turns until it
// is killed, printing "ACK <request id>" only after Append returned nil.
func TestCrashChild(t *testing.T) {
	name := os.Getenv(crashEnvBackend)
	if name == "" {
		t.Skip("child process of TestCrashSafety")
	}
	var be backend
	for _, b := range backends {
		if b.name == name {
			be = b
		}
	}
	s := be.open(t, os.Getenv(crashEnvDir))
	g := NewGroupCommitter(s, 64)
	var out sync.Mutex
	ack := func(ids ...string) {
		var b strings.Builder
		for _, id := range ids {
			b.WriteString("ACK " + id + "\n")
		}
		out.Lock()
		os.Stdout.WriteString(b.String()) // one write: a line is whole or absent
		out.Unlock()
	}
	ctx := context.Background()
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				rec := turn(id, fmt.Sprintf("conv-%d", w%2), 3)
				if err := g.Append(ctx, &rec); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				ack(id)
			}
		}()
	}
	// Multi-turn batches straight to the store, as persist does.
	for i := 0; ; i++ {
		batch := make([]TurnRecord, 5)
		ids := make([]string, 5)
		for k := range batch {
			ids[k] = fmt.Sprintf("b%d-%d", i, k)
			batch[k] = turn(ids[k], fmt.Sprintf("conv-b%d", k%3), 2)
		}
		if err := s.Append(ctx, batch...); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(3)
		}
		ack(ids...)
	}
}

// TestCrashSafety kill -9s a process that is appending and checks that
// every acknowledged turn survived exactly once and the chain verifies.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashEnvBackend) != "" {
		t.Skip("in child")
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnvBackend+"="+be.name, crashEnvDir+"="+dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := map[string]bool{}
			lines := make(chan string, 1024)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			deadline := time.After(20 * time.Second)
			killed := false
			for line := range lines {
				if id, ok := strings.CutPrefix(line, "ACK "); ok {
					acked[id] = true
				}
				if !killed && len(acked) >= 150 {
					cmd.Process.Kill() // SIGKILL, mid-run
					killed = true
				}
				select {
				case <-deadline:
					if !killed {
						cmd.Process.Kill()
						t.Fatalf("child acked only %d turns in 20s; stderr: %s", len(acked), stderr.String())
					}
				default:
				}
			}
			cmd.Wait()
			if !killed {
				t.Fatalf("child exited early after %d acks: %s", len(acked), stderr.String())
			}

			s := be.open(t, dir)
			defer s.Close()
			ctx := context.Background()
			count := map[string]int{}
			convs, err := s.Conversations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range convs {
				ts, err := s.Turns(ctx, c.ID)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range ts {
					count[r.RequestID]++
				}
			}
			for id := range acked {
				if count[id] != 1 {
					t.Errorf("acked turn %s stored %d times", id, count[id])
				}
			}
			for id, n := range count {
				if n > 1 {
					t.Errorf("turn %s stored %d times", id, n)
				}
			}
			rep := verifyOK(t, s)
			t.Logf("%d acked, %d stored (%d committed but unacked at the kill), chain of %d links", len(acked), len(count), len(count)-len(acked), rep.Links)
			// The retries of the unacknowledged turns do not duplicate anything.
			for id := range count {
				if !acked[id] {
					if err := s.Append(ctx, turn(id, "retry", 1)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if r2 := verifyOK(t, s); r2.Links != rep.Links {
				t.Fatalf("retries added links: %d -> %d", rep.Links, r2.Links)
			}
		})
	}
}
