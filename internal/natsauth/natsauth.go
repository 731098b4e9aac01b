// Package natsauth is agentbus's NATS authority: the keys that decide who
// may connect to the bus and what each identity may do there, in NATS's own
// decentralized JWT model (an operator, a system account, and the agentbus
// account whose users are the stages, tools, clients and the operator CLI).
//
// An Authority lives in a directory (by default <data>/auth) as three nkey
// seeds, each mode 0600 in a 0700 directory; nothing else needs storing. From
// them it signs, at any time and without touching the server:
//
//   - the server's trust configuration (ConfigureServer for the embedded
//     server, ServerConfig for an external server or a cluster);
//
//   - user credentials (Creds) carrying one identity's permissions
//     (pipeline.Grant), so issuing a credential for a new client needs no
//     server change and no restart.
//
//     a, _ := natsauth.LoadOrCreate("data/auth")
//     creds, _ := a.Creds("billing-bot", grant, 0) // a .creds file's contents
//
// Guarantees: seeds are created with O_EXCL and mode 0600 and are refused
// when other users can read them; no method returns or logs a seed except
// Creds (whose output is the credential itself); an Authority's LogValue
// shows only public keys.
package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// AccountName is the NATS account every agentbus identity belongs to.
const AccountName = "AGENTBUS"

// ErrNoAuthority is returned by Load when dir holds no authority.
var ErrNoAuthority = errors.New("no NATS authority")

// ErrInsecureFile is returned for a seed file others can read.
var ErrInsecureFile = errors.New("auth file is readable by other users")

// Authority holds the operator, system account and agentbus account keys.
type Authority struct {
	dir                       string
	operator, system, account nkeys.KeyPair
	opPub, sysPub, accPub     string
}

type keyFile struct {
	name   string
	create func() (nkeys.KeyPair, error)
	dst    *nkeys.KeyPair
}

func (a *Authority) files() []keyFile {
	return []keyFile{
		{"operator.nk", nkeys.CreateOperator, &a.operator},
		{"system.nk", nkeys.CreateAccount, &a.system},
		{"account.nk", nkeys.CreateAccount, &a.account},
	}
}

// Load opens the authority in dir; errors.Is(err, ErrNoAuthority) when
// there is none.
func Load(dir string) (*Authority, error) { return open(dir, false) }

// LoadOrCreate opens the authority in dir, creating its keys (and dir,
// mode 0700) when they do not exist. Two processes creating at once end
// with the same keys.
func LoadOrCreate(dir string) (*Authority, error) { return open(dir, true) }

func open(dir string, create bool) (*Authority, error) {
	a := &Authority{dir: dir}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("auth dir: %w", err)
		}
	}
	for _, f := range a.files() {
		kp, err := loadKey(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) && create {
			kp, err = createKey(filepath.Join(dir, f.name), f.create)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s (start `agentbus serve --data %s` once, or run `agentbus nats init`)", ErrNoAuthority, dir, filepath.Dir(dir))
		}
		if err != nil {
			return nil, err
		}
		*f.dst = kp
	}
	var err error
	if a.opPub, err = a.operator.PublicKey(); err != nil {
		return nil, err
	}
	if a.sysPub, err = a.system.PublicKey(); err != nil {
		return nil, err
	}
	if a.accPub, err = a.account.PublicKey(); err != nil {
		return nil, err
	}
	return a, nil
}

func loadKey(path string) (nkeys.KeyPair, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %s; run chmod 600 %s", ErrInsecureFile, path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("auth file %s: not an nkey seed", path)
	}
	return kp, nil
}

func createKey(path string, gen func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	kp, err := gen()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	if err := WriteSecret(path, append(seed, '\n')); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path) // another process won the race
		}
		return nil, err
	}
	return kp, nil
}

// WriteSecret creates path with mode 0600 and writes b; it fails with
// fs.ErrExist when the file exists.
func WriteSecret(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReplaceSecret writes b to path with mode 0600, replacing it atomically.
func ReplaceSecret(path string, b []byte) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := WriteSecret(tmp, b); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Dir is the authority's directory.
func (a *Authority) Dir() string { return a.dir }

// Account is the public key of the agentbus account.
func (a *Authority) Account() string { return a.accPub }

// LogValue shows public keys only.
func (a *Authority) LogValue() slog.Value {
	return slog.GroupValue(slog.String("operator", a.opPub), slog.String("account", a.accPub))
}

func (a *Authority) operatorJWT() (string, error) {
	oc := jwt.NewOperatorClaims(a.opPub)
	oc.Name = "agentbus"
	oc.SystemAccount = a.sysPub
	return oc.Encode(a.operator)
}

func (a *Authority) accountJWTs() (map[string]string, error) {
	sc := jwt.NewAccountClaims(a.sysPub)
	sc.Name = "SYS"
	sys, err := sc.Encode(a.operator)
	if err != nil {
		return nil, err
	}
	ac := jwt.NewAccountClaims(a.accPub)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	acc, err := ac.Encode(a.operator)
	if err != nil {
		return nil, err
	}
	return map[string]string{a.sysPub: sys, a.accPub: acc}, nil
}

// ConfigureServer makes an embedded server trust this authority: operator
// mode, the two accounts preloaded in a memory resolver. Every client must
// then present a user credential signed by the agentbus account.
func (a *Authority) ConfigureServer(o *server.Options) error {
	opJWT, err := a.operatorJWT()
	if err != nil {
		return err
	}
	oc, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		return err
	}
	accs, err := a.accountJWTs()
	if err != nil {
		return err
	}
	r := &server.MemAccResolver{}
	for pub, j := range accs {
		if err := r.Store(pub, j); err != nil {
			return err
		}
	}
	o.TrustedOperators = []*jwt.OperatorClaims{oc}
	o.SystemAccount = a.sysPub
	o.AccountResolver = r
	return nil
}

// ServerConfig is the trust configuration of an external NATS server (or
// every node of a cluster) in the server's configuration language: include
// it from the main file (`include "auth.conf"`).
func (a *Authority) ServerConfig() (string, error) {
	opJWT, err := a.operatorJWT()
	if err != nil {
		return "", err
	}
	accs, err := a.accountJWTs()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# agentbus NATS trust configuration, written by `agentbus nats config`.\n")
	fmt.Fprintf(&b, "# Operator mode: only users signed by the agentbus account (%s) can connect,\n", a.accPub)
	fmt.Fprintf(&b, "# each with the permissions in its credential. Issue credentials with\n")
	fmt.Fprintf(&b, "# `agentbus nats creds --role ROLE --name NAME`: no server change needed.\n")
	fmt.Fprintf(&b, "# It holds public keys and signed claims only, no secret.\n\n")
	fmt.Fprintf(&b, "operator: %q\n", opJWT)
	fmt.Fprintf(&b, "system_account: %q\n", a.sysPub)
	fmt.Fprintf(&b, "resolver: MEMORY\n")
	fmt.Fprintf(&b, "resolver_preload: {\n")
	keys := make([]string, 0, len(accs))
	for k := range accs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %q\n", k, accs[k])
	}
	fmt.Fprintf(&b, "}\n")
	return b.String(), nil
}

// UserJWT signs a user JWT for the identity name with grant g, valid for
// ttl (0: no expiry), for the user key userPub.
func (a *Authority) UserJWT(userPub, name string, g pipeline.Grant, ttl time.Duration) (string, error) {
	if err := pipeline.ValidName(name); err != nil {
		return "", err
	}
	uc := jwt.NewUserClaims(userPub)
	uc.Name = name
	uc.IssuerAccount = "" // signed by the account key itself
	if ttl > 0 {
		uc.Expires = time.Now().Add(ttl).Unix()
	}
	if !g.All {
		uc.Pub.Allow.Add(g.Pub...)
		uc.Sub.Allow.Add(g.Sub...)
		if len(uc.Pub.Allow) == 0 {
			// An empty allow list would mean "everything".
			uc.Pub.Deny.Add(">")
		}
		if g.Responses != 0 {
			uc.Resp = &jwt.ResponsePermission{MaxMsgs: g.Responses, Expires: g.ResponseTTL}
		}
	}
	uc.Tags.Add("agentbus")
	var vr jwt.ValidationResults
	uc.Validate(&vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return "", fmt.Errorf("user %s: %w", name, errors.Join(errs...))
	}
	return uc.Encode(a.account)
}

// Creds returns the contents of a credentials file (user JWT and a fresh
// user seed) for the identity name with grant g, valid for ttl (0: no
// expiry). Use it with nats.UserCredentials or --nats-creds.
func (a *Authority) Creds(name string, g pipeline.Grant, ttl time.Duration) ([]byte, error) {
	j, seed, err := a.issue(name, g, ttl)
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(j, seed)
}

func (a *Authority) issue(name string, g pipeline.Grant, ttl time.Duration) (string, []byte, error) {
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, err
	}
	pub, err := ukp.PublicKey()
	if err != nil {
		return "", nil, err
	}
	seed, err := ukp.Seed()
	if err != nil {
		return "", nil, err
	}
	j, err := a.UserJWT(pub, name, g, ttl)
	if err != nil {
		return "", nil, err
	}
	return j, seed, nil
}

// Issuer gives each connection of a process its own identity, minted in
// memory from the authority: role "" is the process's own connection.
type Issuer struct {
	auth   *Authority
	grants func(role string) (name string, g pipeline.Grant, err error)
}

// NewIssuer returns the pipeline.Credentials that authenticate a role's
// connections with the grant grants(role) returns.
func NewIssuer(a *Authority, grants func(role string) (name string, g pipeline.Grant, err error)) *Issuer {
	return &Issuer{auth: a, grants: grants}
}

// ConnectOptions implements pipeline.Credentials.
func (i *Issuer) ConnectOptions(role string) ([]nats.Option, error) {
	name, g, err := i.grants(role)
	if err != nil {
		return nil, err
	}
	j, seed, err := i.auth.issue(name, g, 0)
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.UserJWTAndSeed(j, string(seed)), nats.CustomInboxPrefix(g.Inbox)}, nil
}
