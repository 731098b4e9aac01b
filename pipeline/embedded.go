package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// MaxPayload is the largest message the bus carries: the embedded server's
// max_payload, and ops/nats-server.conf's. Every event of a turn must fit
// (ingest admits only turns that leave room for the rest).
const MaxPayload = 1 << 20

// MaxControlLine is the longest protocol line the embedded server (and
// the server configurations in ops/) accepts. A connection's CONNECT
// line carries its user JWT, whose size grows with the identity's
// permissions: NATS's 4 KiB default is too small for the llm stage's.
const MaxControlLine = 16 << 10

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// Listen is the client address other processes connect to. "" or a
	// port of -1 picks a random port. Default "127.0.0.1:4222".
	Listen string
	// StoreDir holds JetStream data. Required; `agentbus serve` uses
	// <data>/nats.
	StoreDir string
	// SyncAlways fsyncs every write before acking (sync_interval: always).
	// Default false: JetStream's default 2-minute fsync interval; see
	// docs/operations.md for the trade-off.
	SyncAlways bool
	// MaxMemory and MaxStore bound JetStream resources (bytes); 0 = server
	// defaults.
	MaxMemory, MaxStore int64
	// StartTimeout bounds waiting for the server. Default 10s.
	StartTimeout time.Duration
	// Auth decides who may connect (natsauth.Authority: operator mode,
	// one identity per role). Nil accepts anonymous connections, which
	// Validate allows on a loopback Listen only. `agentbus serve` always
	// sets it.
	Auth ServerAuth
	// TLSCert and TLSKey serve the client port over TLS (PEM files).
	// Default: plain TCP (connections are still authenticated; the
	// in-process stages never use the network).
	TLSCert, TLSKey string
}

// DefaultEmbeddedConfig returns the documented defaults.
func DefaultEmbeddedConfig() EmbeddedConfig {
	return EmbeddedConfig{Listen: "127.0.0.1:4222", StartTimeout: 10 * time.Second}
}

// Validate reports every problem of the configuration.
func (c EmbeddedConfig) Validate() error {
	var errs []error
	if c.StoreDir == "" {
		errs = append(errs, errors.New("embedded.store_dir is required"))
	}
	if c.Listen != "" {
		if host, _, err := splitListen(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("embedded.listen: %w", err))
		} else if c.Auth == nil && !IsLoopback(host) {
			errs = append(errs, fmt.Errorf("embedded.listen %s: refusing to listen beyond loopback without authentication", c.Listen))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("embedded tls: both a certificate and a key file are needed"))
	}
	if c.StartTimeout <= 0 {
		errs = append(errs, errors.New("embedded.start_timeout must be positive"))
	}
	return errors.Join(errs...)
}

func splitListen(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < -1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	if p == 0 {
		p = -1
	}
	return host, p, nil
}

// StartEmbedded starts a JetStream-enabled NATS server in this process.
// It never traps signals (NoSigs) so the caller's shutdown drains the
// router first. The caller must call Shutdown.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig, log *slog.Logger) (*server.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port := "127.0.0.1", -1
	if cfg.Listen != "" {
		host, port, _ = splitListen(cfg.Listen)
	}
	opts := &server.Options{
		ServerName:         "agentbus-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Clean(cfg.StoreDir),
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true,
		MaxPayload:         MaxPayload,
		MaxControlLine:     MaxControlLine,
	}
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	if cfg.Auth != nil {
		if err := cfg.Auth.ConfigureServer(opts); err != nil {
			return nil, fmt.Errorf("embedded nats auth: %w", err)
		}
	}
	if cfg.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("embedded nats tls: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, tc, 2
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if log != nil {
		s.SetLoggerV2(natsServerLogger{log.With("component", "nats-server")}, false, false, false)
	}
	go s.Start()
	deadline := cfg.StartTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadline {
		deadline = time.Until(dl)
	}
	if !s.ReadyForConnections(deadline) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready for connections after %s (is %s in use?)", deadline, cfg.Listen)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("embedded nats: JetStream did not start (check store dir permissions and space)")
	}
	return s, nil
}
