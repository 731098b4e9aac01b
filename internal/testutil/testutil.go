// Package testutil starts real infrastructure for tests: an embedded
// JetStream server on a random port with its store in t.TempDir().
package testutil

import (
	"context"
	"github.com/agentbus/agentbus/pipeline"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer starts an embedded JetStream server for the test and shuts it
// down at cleanup.
func NATSServer(t testing.TB) *server.Server {
	t.Helper()
	return NATSServerAt(t, t.TempDir(), -1)
}

// NATSServerAt starts a server with its store in dir on port (-1 random).
func NATSServerAt(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	return NATSServerWith(t, dir, port, nil)
}

// NATSServerWith starts a server as NATSServerAt does, after configure
// (e.g. natsauth.Authority.ConfigureServer: operator mode) changed its
// options.
func NATSServerWith(t testing.TB, dir string, port int, configure func(*server.Options) error) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true, MaxControlLine: pipeline.MaxControlLine}
	if configure != nil {
		if err := configure(o); err != nil {
			t.Fatal(err)
		}
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Conn connects to s and closes the connection at cleanup.
func Conn(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Logger logs to the test output when AGENTBUS_TEST_LOG is set, else
// discards.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("AGENTBUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// StreamInfo is the current info of stream; with subjectsFilter its
// State.Subjects counts the messages of the matching subjects.
func StreamInfo(js jetstream.JetStream, stream string, subjectsFilter ...string) (*jetstream.StreamInfo, error) {
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	if len(subjectsFilter) == 0 {
		return s.CachedInfo(), nil
	}
	return s.Info(ctx, jetstream.WithSubjectFilter(subjectsFilter[0]))
}

// ConsumerInfo is the current info of a stream's consumer.
func ConsumerInfo(js jetstream.JetStream, stream, consumer string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(context.Background(), stream, consumer)
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// LastMsg is the last message of stream on subject.
func LastMsg(js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error) {
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.GetLastMsgForSubject(ctx, subject)
}
