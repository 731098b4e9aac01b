package obs

import (
	"fmt"
	"sync"
	"testing"
)

func TestLabelsAreBounded(t *testing.T) {
	l := NewLabels(nil, 3)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Value(fmt.Sprint("u", i)) }()
	}
	wg.Wait()
	own := 0
	for i := range 100 {
		if v := l.Value(fmt.Sprint("u", i)); v != Other {
			own++
			if v != fmt.Sprint("u", i) {
				t.Fatalf("value %q", v)
			}
		}
	}
	if own != 3 {
		t.Fatalf("%d users with their own label, want 3", own)
	}
	a := NewLabels([]string{"vip"}, 3)
	if a.Value("vip") != "vip" || a.Value("x") != Other {
		t.Fatal("allowlist")
	}
	if NewLabels(nil, 0).Value("x") != Other {
		t.Fatal("max 0")
	}
}

func TestNilMetricsAreOff(t *testing.T) {
	var m *Metrics
	m.Usage("m", "u", 1, 2, 3)
	m.GuardVerdict("allow", nil)
	m.LimitRejected("guard", LimitRate, "user.requests")
	m.ToolCall("t", "allow")
	m.Commit(0, 1)
	m.Request("http", 200, 0)
	if m.User("u") != "" {
		t.Fatal("nil metrics label")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{MaxUsers: -1, MaxModels: 0, MaxTools: 0, Users: []string{" "}}).Validate(); err == nil {
		t.Fatal("bad config accepted")
	}
}
