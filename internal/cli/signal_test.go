//go:build unix

package cli_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// serve survives SIGHUP (it logs that it ignores it) and shuts down
// gracefully on SIGTERM, exiting 0.
func TestServeIgnoresSIGHUP(t *testing.T) {
	cmd := exec.Command(os.Args[0], "serve", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1", "--log-format", "json")
	cmd.Env = []string{helperEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 64)
	go func() {
		defer close(logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				logs <- rec.Msg
			}
		}
	}()
	// waitLog waits for a log message; the logs end when the process exits.
	waitLog := func(msg string) {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case m, ok := <-logs:
				if !ok {
					t.Fatalf("the process exited (%v) before logging %q", cmd.Wait(), msg)
				}
				if m == msg {
					return
				}
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatalf("no %q logged in a minute", msg)
			}
		}
	}
	waitLog("ingest listening")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("SIGHUP ignored: configuration is read only at start; restart to change it (SIGINT or SIGTERM shut down gracefully)")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog("shutdown complete")
	for range logs {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM, want status 0", err)
	}
}
