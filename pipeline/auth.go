package pipeline

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Credentials gives each NATS connection of a process its identity. The
// runtime asks for role "" (its own connection: provisioning) and for each
// stage's name (the stage's publisher, consumers and micro service), so
// one process running several stages can hold one identity per stage.
type Credentials interface {
	ConnectOptions(role string) ([]nats.Option, error)
}

// ServerAuth configures who may connect to the embedded server (see
// natsauth.Authority).
type ServerAuth interface {
	ConfigureServer(o *server.Options) error
}

// CredsFile authenticates every connection of the process with one NATS
// credentials file (a user JWT and its seed, as `agentbus nats creds` writes
// it). Replies arrive on the identity's inbox prefix (InboxPrefix of the
// JWT's name), the only inbox its permissions allow.
type CredsFile string

// ConnectOptions implements Credentials.
func (f CredsFile) ConnectOptions(string) ([]nats.Option, error) {
	path := string(f)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats credentials: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("nats credentials %s: not a user credential: %w", path, err)
	}
	if err := ValidName(uc.Name); err != nil {
		return nil, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	return []nats.Option{nats.UserCredentials(path), nats.CustomInboxPrefix(InboxPrefix(uc.Name))}, nil
}

// ClientTLS configures TLS towards the NATS server.
type ClientTLS struct {
	// CAFile verifies the server's certificate (PEM). Default: the system
	// roots.
	CAFile string
	// CertFile and KeyFile present a client certificate (mutual TLS).
	// Default none.
	CertFile, KeyFile string
}

func (t ClientTLS) options() []nats.Option {
	var o []nats.Option
	if t.CAFile != "" {
		o = append(o, nats.RootCAs(t.CAFile))
	}
	if t.CertFile != "" {
		o = append(o, nats.ClientCert(t.CertFile, t.KeyFile))
	}
	return o
}

func (t ClientTLS) validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("nats tls: a client certificate needs both cert and key files")
	}
	return nil
}

// IsLoopback reports whether a listen host accepts connections from this
// machine only.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
