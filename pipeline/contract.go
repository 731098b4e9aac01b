package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/agentbus/agentbus/messages"
)

// Contract declares everything a stage does on the bus: the events it
// consumes and produces, the KV buckets it reads or writes, the
// request-reply subjects it calls and serves. It is the one place a stage's
// NATS permissions come from (Grant): an identity issued for the stage may do
// what its contract says and nothing else, so a compromised or buggy stage
// cannot forge another stage's events, read conversations it has no business
// with, or change the streams.
type Contract struct {
	// Stage names the stage ("guard"): its durable consumers, its
	// dead-letter subject and its micro service derive from it.
	Stage string `json:"stage"`
	// Consumes are the events whose durable consumers the stage owns.
	Consumes []string `json:"consumes,omitempty"`
	// Produces are the events the stage may publish.
	Produces []string `json:"produces,omitempty"`
	// KV are the KV buckets the stage uses.
	KV []KVUse `json:"kv,omitempty"`
	// Requests are subjects the stage may publish to (requests to other
	// services, core NATS notifications such as streaming deltas).
	// Wildcards allowed.
	Requests []string `json:"requests,omitempty"`
	// Subscribes are subjects the stage may subscribe to besides its own
	// consumers, inbox and micro service (request-reply endpoints it serves,
	// core NATS notifications). Wildcards allowed.
	Subscribes []string `json:"subscribes,omitempty"`
	// Services are extra NATS micro services the stage registers (its own,
	// ServiceName(Stage), is always included).
	Services []string `json:"services,omitempty"`
	// ManyResponses lets the stage answer one request with many messages
	// (a stream of deltas) for up to ResponseTTL; default one answer per
	// request within two minutes.
	ManyResponses bool `json:"many_responses,omitempty"`
	// ResponseTTL bounds how long after a request the stage may answer it.
	// Default 2m.
	ResponseTTL time.Duration `json:"-"`
}

// KVUse is a KV bucket a stage uses.
type KVUse struct {
	Bucket string `json:"bucket"`
	// Write allows puts, compare-and-swap updates and deletes; without it
	// the stage may only read single keys.
	Write bool `json:"write,omitempty"`
}

// Grant is what one NATS identity may do: the subjects it may publish and
// subscribe to, whether it may answer requests it receives, and the inbox
// prefix its replies arrive on (nats.CustomInboxPrefix). An empty Pub and
// Sub with All set means unrestricted (the operator).
type Grant struct {
	// All grants every subject of the account (the operator role).
	All bool
	// Pub and Sub are allowed subjects (NATS wildcards allowed).
	Pub, Sub []string
	// Responses is how many messages the identity may publish to the reply
	// subject of each request it received (-1 unlimited, 0 none).
	Responses int
	// ResponseTTL bounds how long after the request those answers may go.
	ResponseTTL time.Duration
	// Inbox is the identity's inbox prefix; Sub includes Inbox+".>".
	Inbox string
}

// InboxPrefix is the inbox prefix of the identity called name: replies to
// its requests arrive on InboxPrefix(name)+".>" and nobody else may
// subscribe there.
func InboxPrefix(name string) string { return "_INBOX_" + name }

// ErrBadName is returned for an identity name that is not 1-64 characters
// of [A-Za-z0-9_-].
var ErrBadName = errors.New("identity name must be 1-64 characters of [A-Za-z0-9_-]")

// ValidName reports whether name can name an identity (and its inbox).
func ValidName(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return ErrBadName
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return ErrBadName
		}
	}
	return nil
}

// JetStream API and KV subjects.
const (
	jsAPI = "$JS.API."
	kvPre = "$KV."
)

// ParseContract reads a contract written as JSON, the form a stage written
// outside agentbus declares itself in and an operator issues its NATS
// credential from (agentbus nats creds --contract FILE):
//
//	{"stage": "audit", "consumes": ["completed", "rejected", "failed"],
//	 "kv": [{"bucket": "audit_seen", "write": true}]}
//
// Unknown fields, trailing data and an invalid contract are errors: a
// misspelt field must not silently grant less, or more, than meant.
// (ResponseTTL has no JSON form: a stage that needs it sets it in Go.)
func ParseContract(data []byte) (Contract, error) {
	var c Contract
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Contract{}, fmt.Errorf("contract: %w", err)
	}
	if dec.More() {
		return Contract{}, errors.New("contract: data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return Contract{}, err
	}
	// What a contract file may not ask for: every subject at once, or
	// the JetStream, KV, system and inbox subjects its consumers, buckets
	// and inbox already grant exactly (a request there would reach other
	// stages' consumers, buckets or replies).
	var errs []error
	for _, subj := range slices.Concat(c.Requests, c.Subscribes) {
		first, _, _ := strings.Cut(subj, ".")
		if first == ">" || first == "*" || strings.HasPrefix(first, "$") || strings.HasPrefix(first, "_INBOX") {
			errs = append(errs, fmt.Errorf("stage %s: subject %q is not for a contract file (declare consumers and kv instead)", c.Stage, subj))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Contract{}, err
	}
	return c, nil
}

// Validate reports every problem of the contract.
func (c Contract) Validate() error {
	var errs []error
	if err := ValidName(c.Stage); err != nil {
		errs = append(errs, fmt.Errorf("stage %q: %w", c.Stage, err))
	}
	for _, ev := range append(slices.Clone(c.Consumes), c.Produces...) {
		if ev == "" || !messages.ValidID(ev) {
			errs = append(errs, fmt.Errorf("stage %s: bad event %q", c.Stage, ev))
		}
	}
	for _, kv := range c.KV {
		if kv.Bucket == "" || !messages.ValidID(kv.Bucket) {
			errs = append(errs, fmt.Errorf("stage %s: bad bucket %q", c.Stage, kv.Bucket))
		}
	}
	for _, subj := range slices.Concat(c.Requests, c.Subscribes, c.Services) {
		if !validSubject(subj) {
			errs = append(errs, fmt.Errorf("stage %s: bad subject or service %q", c.Stage, subj))
		}
	}
	if c.ResponseTTL < 0 {
		errs = append(errs, fmt.Errorf("stage %s: negative response TTL", c.Stage))
	}
	return errors.Join(errs...)
}

// Grant returns the permissions of an identity called name that runs the
// stage: publish its produced events and dead letters, create (never
// update or delete) the streams and its own consumers, ack its own
// consumers, use its buckets, call its Requests, serve its micro services,
// receive replies on its own inbox.
func (c Contract) Grant(name string) Grant {
	g := Grant{Inbox: InboxPrefix(name), Responses: 1, ResponseTTL: 2 * time.Minute}
	if c.ManyResponses {
		g.Responses = -1
	}
	if c.ResponseTTL > 0 {
		g.ResponseTTL = c.ResponseTTL
	}
	pub := func(s ...string) { g.Pub = append(g.Pub, s...) }
	sub := func(s ...string) { g.Sub = append(g.Sub, s...) }
	sub(g.Inbox + ".>")
	for _, ev := range c.Produces {
		pub(messages.EventFilter(ev))
	}
	pub(messages.DLQSubject(c.Stage))
	// Account usage (creating a KV bucket asks for it first).
	pub(jsAPI + "INFO")
	for _, s := range []string{messages.StreamTurns, messages.StreamDLQ} {
		pub(jsAPI+"STREAM.INFO."+s, jsAPI+"STREAM.CREATE."+s)
	}
	for _, ev := range c.Consumes {
		d := DurableName(c.Stage, ev)
		pub(
			// Create with this exact filter only (the server checks the
			// body's filter against the subject): the consumer cannot be
			// widened to other events.
			jsAPI+"CONSUMER.CREATE."+messages.StreamTurns+"."+d+"."+messages.EventFilter(ev),
			jsAPI+"CONSUMER.INFO."+messages.StreamTurns+"."+d,
			// Pull its messages (they arrive on the identity's inbox).
			jsAPI+"CONSUMER.MSG.NEXT."+messages.StreamTurns+"."+d,
			"$JS.ACK."+messages.StreamTurns+"."+d+".>",
			"$JS.ACK.*.*."+messages.StreamTurns+"."+d+".>",
		)
	}
	kvs := c.KV
	if slices.ContainsFunc(c.Produces, messages.Terminal) {
		// Ending a turn claims its outcome first.
		kvs = append(slices.Clone(kvs), KVUse{Bucket: TerminalsBucket, Write: true})
	}
	for _, kv := range kvs {
		s := "KV_" + kv.Bucket
		// Reads are direct gets of a key's last value (agentbus's buckets
		// allow direct access), the only form granted: an identity's JWT
		// must fit in a CONNECT line (MaxControlLine).
		pub(jsAPI+"STREAM.INFO."+s, jsAPI+"STREAM.CREATE."+s, jsAPI+"DIRECT.GET."+s+".>")
		if kv.Write {
			pub(kvPre + kv.Bucket + ".>")
		}
	}
	pub(c.Requests...)
	sub(c.Subscribes...)
	sub(HealthSubject(c.Stage), HealthSubject(c.Stage)+".>")
	// Its own readiness, for a container health check (`<stage> health`).
	pub(HealthSubject(c.Stage) + ".ready")
	for _, svc := range append([]string{ServiceName(c.Stage)}, c.Services...) {
		sub(MicroSubjects(svc)...)
	}
	return g
}

// MicroSubjects are the control subjects a NATS micro service called name
// listens on ($SRV.PING|INFO|STATS[.name[.id]]).
func MicroSubjects(name string) []string {
	return []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.*." + name, "$SRV.*." + name + ".*"}
}

// validSubject reports whether s is a NATS subject (wildcards allowed):
// dot-separated non-empty tokens without whitespace, ">" only last.
func validSubject(s string) bool {
	if s == "" || strings.ContainsFunc(s, unicode.IsSpace) {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || (t == ">" && i != len(toks)-1) || (len(t) > 1 && strings.ContainsAny(t, "*>")) {
			return false
		}
	}
	return true
}
