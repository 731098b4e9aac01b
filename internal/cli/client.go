package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentbus/agentbus/internal/apikey"
	apikv "github.com/agentbus/agentbus/internal/apikey/kvstore"
	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/firewall"
	"github.com/agentbus/agentbus/internal/sanitize"
	"github.com/agentbus/agentbus/internal/stage/ingest"
	"github.com/agentbus/agentbus/internal/stage/persist"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connFlags are the flags of every command that connects to a running
// system: where it is and who the CLI is there.
type connFlags struct {
	url, creds, data, ca, cert, key *string
}

func addConnFlags(f *flags) connFlags {
	return connFlags{
		url:   f.str("nats", "nats://127.0.0.1:4222", "NATS server URL of the running system"),
		creds: f.str("nats-creds", "", "NATS credentials file (default: the operator credential in --data, written by agentbus serve)"),
		data:  f.str("data", "data", "data directory of the system (its auth/operator.creds is used when --nats-creds is empty)"),
		ca:    f.str("nats-ca", "", "CA certificate (PEM) that verifies a TLS NATS server"),
		cert:  f.str("nats-cert", "", "client certificate (PEM) for a NATS server that requires mutual TLS"),
		key:   f.str("nats-key", "", "client key (PEM) for --nats-cert"),
	}
}

// credsFile is the credential the CLI uses: --nats-creds, else the
// operator credential of the data directory when it exists, else none.
func (c connFlags) credsFile() string {
	if *c.creds != "" {
		return *c.creds
	}
	if p := app.OperatorCreds(*c.data); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (c connFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("agentbus-cli"), nats.Timeout(3 * time.Second)}
	if p := c.credsFile(); p != "" {
		co, err := pipeline.CredsFile(p).ConnectOptions("")
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, co...)
	}
	if *c.ca != "" {
		opts = append(opts, nats.RootCAs(*c.ca))
	}
	if *c.cert != "" {
		opts = append(opts, nats.ClientCert(*c.cert, *c.key))
	}
	nc, err := nats.Connect(*c.url, opts...)
	if err != nil {
		hint := "is `agentbus serve` running?"
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "Authorization") {
			hint = "give a credential with --nats-creds, or --data of the running system"
		}
		return nil, nil, fmt.Errorf("connect to %s (%s): %w", pipeline.RedactURL(*c.url), hint, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// chat sends one turn, over NATS (default) or the HTTP API (--http).
func chat(env Env, args []string) error {
	f := newFlags(env, "chat")
	cf := addConnFlags(f)
	httpURL := f.str("http-url", "", "send through the HTTP API at this base URL (e.g. http://127.0.0.1:8080) instead of NATS")
	key := f.str("api-key", "", "API key: through the HTTP API (--http-url) or the NATS entry (agentbus.ingest.chat); without it, the turn is published directly with the operator credential")
	conv := f.str("conversation", "", "continue this conversation (server-side memory)")
	model := f.str("model", "", "model name (default: the system's default)")
	user := f.str("user", "cli", "user name for turns published over NATS")
	timeout := f.duration("timeout", 2*time.Minute, "how long to wait for the answer")
	if err := f.parse(args); err != nil {
		return err
	}
	text := strings.Join(f.Args(), " ")
	if text == "" {
		return fmt.Errorf("%w: agentbus chat \"your message\"", ErrUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *httpURL != "" {
		return chatHTTP(ctx, env, *httpURL, *key, *conv, *model, text)
	}
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	if *key != "" {
		return chatNATS(ctx, env, nc, *key, *conv, *model, text)
	}
	t := messages.Turn{
		SchemaVersion: messages.SchemaVersion, RequestID: ingest.NewID("req_"), ConversationID: *conv, UseHistory: *conv != "",
		User: *user, Endpoint: "nats", Model: *model, Messages: []messages.Message{{Role: messages.RoleUser, Content: text}}, CreatedAt: time.Now().UTC(),
	}
	if t.ConversationID == "" {
		t.ConversationID = ingest.NewID("conv_")
	}
	sub, err := nc.SubscribeSync(messages.ReplyFilter(t.RequestID))
	if err != nil {
		return err
	}
	if err := ingest.Publish(ctx, js, &t); err != nil {
		return err
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("no answer: %w", err)
		}
		event, _, _ := messages.ParseSubject(m.Subject)
		switch event {
		case messages.EventCompleted:
			var c messages.Completed
			if err := json.Unmarshal(m.Data, &c); err != nil {
				return err
			}
			fmt.Fprintln(env.Stdout, c.Message.Content)
			fmt.Fprintf(env.Stderr, "(conversation %s, model %s, %d tokens)\n", c.ConversationID, c.Model, c.Usage.TotalTokens)
			return nil
		case messages.EventRejected:
			var r messages.Rejected
			_ = json.Unmarshal(m.Data, &r)
			return fmt.Errorf("rejected (%s): %s", r.Code, r.Reason)
		case messages.EventFailed:
			var fl messages.Failed
			_ = json.Unmarshal(m.Data, &fl)
			return fmt.Errorf("failed in %s (%s): %s", fl.Stage, fl.Code, fl.Reason)
		}
	}
}

// chatNATS sends the turn through the ingest stage's NATS entry, as a
// client in any language would.
func chatNATS(ctx context.Context, env Env, nc *nats.Conn, key, conv, model, text string) error {
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": text}}})
	m := nats.NewMsg(messages.SubjectChat)
	m.Data = body
	m.Header.Set(ingest.HeaderAuthorization, "Bearer "+key)
	if conv != "" {
		m.Header.Set(ingest.HeaderConversation, conv)
	}
	rep, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return fmt.Errorf("NATS entry %s: %w", messages.SubjectChat, err)
	}
	var out struct {
		Choices []struct {
			Message messages.Message `json:"message"`
		} `json:"choices"`
		Error *struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rep.Data, &out); err != nil {
		return fmt.Errorf("NATS entry: undecodable answer: %w", err)
	}
	if out.Error != nil {
		return fmt.Errorf("status %s (%s): %s", rep.Header.Get(ingest.HeaderStatus), out.Error.Code, out.Error.Message)
	}
	if len(out.Choices) == 0 {
		return errors.New("NATS entry: no choices")
	}
	fmt.Fprintln(env.Stdout, out.Choices[0].Message.Content)
	fmt.Fprintf(env.Stderr, "(conversation %s)\n", rep.Header.Get(ingest.HeaderConversation))
	return nil
}

// firstModel asks the HTTP API's /v1/models for the model a request
// naming none should use (the HTTP API, like OpenAI's, requires one).
func firstModel(ctx context.Context, base, key string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/models", nil)
	if err != nil {
		return "", err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return "", fmt.Errorf("GET /v1/models: HTTP %d: %w", resp.StatusCode, err)
	}
	if list.Error != nil {
		return "", fmt.Errorf("GET /v1/models: HTTP %d: %s", resp.StatusCode, list.Error.Message)
	}
	if len(list.Data) == 0 {
		return "", errors.New("GET /v1/models: no model is served; name one with --model")
	}
	return list.Data[0].ID, nil
}

func chatHTTP(ctx context.Context, env Env, base, key, conv, model, text string) error {
	if model == "" {
		var err error
		if model, err = firstModel(ctx, base, key); err != nil {
			return err
		}
	}
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": text}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if conv != "" {
		req.Header.Set("X-Conversation-Id", conv)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message messages.Message `json:"message"`
		} `json:"choices"`
		Error *struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("HTTP %d: undecodable body: %w", resp.StatusCode, err)
	}
	if out.Error != nil {
		return fmt.Errorf("HTTP %d (%s): %s", resp.StatusCode, out.Error.Code, out.Error.Message)
	}
	if len(out.Choices) == 0 {
		return fmt.Errorf("HTTP %d: no choices", resp.StatusCode)
	}
	fmt.Fprintln(env.Stdout, out.Choices[0].Message.Content)
	fmt.Fprintf(env.Stderr, "(conversation %s)\n", resp.Header.Get("X-Conversation-Id"))
	return nil
}

// keys manages API keys in the running system's KV bucket.
func keys(env Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: agentbus keys create|list|revoke", ErrUsage)
	}
	sub, args := args[0], args[1:]
	f := newFlags(env, "keys "+sub)
	cf := addConnFlags(f)
	user := f.String("user", "", "user the key authenticates as (create)")
	rpm := f.Int("rpm", 0, "the key's own requests per minute (create; 0 = the user's limit)")
	tpm := f.Int("tpm", 0, "the key's own tokens per minute (create; 0 = the user's limit)")
	models := f.String("models", "", "comma-separated models the key may use (create; empty = every model)")
	cache := f.Bool("cache", false, "let the key's turns use the response cache (create; deterministic calls, or any a request marks \"cache\": true)")
	lead, args := leadingArgs(args)
	if err := f.parse(args); err != nil {
		return err
	}
	pos := append(lead, f.Args()...)
	nc, js, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := js.KeyValue(context.Background(), app.KeysBucket)
	if err != nil {
		return fmt.Errorf("keys bucket %s: %w (start the system once first)", app.KeysBucket, err)
	}
	store := apikv.New(kv)
	ctx := context.Background()
	switch sub {
	case "create":
		if *user == "" {
			return fmt.Errorf("%w: keys create --user NAME", ErrUsage)
		}
		var allowed []string
		for _, m := range strings.Split(*models, ",") {
			if m = strings.TrimSpace(m); m != "" {
				allowed = append(allowed, m)
			}
		}
		plain, rec, err := apikey.IssueWith(ctx, store, *user, apikey.Options{RPM: *rpm, TPM: *tpm, Models: allowed, Cache: *cache})
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, plain)
		fmt.Fprintf(env.Stderr, "key %s for user %s created; it is shown once, store it now\n", rec.ID, rec.User)
		return nil
	case "list":
		recs, err := store.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER\tRPM\tTPM\tMODELS\tCACHE\tCREATED\tSTATUS")
		for _, r := range recs {
			st := "active"
			if r.Revoked {
				st = "revoked"
			}
			ms := "*"
			if len(r.Models) > 0 {
				ms = strings.Join(r.Models, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%t\t%s\t%s\n", r.ID, r.User, r.RPM, r.TPM, ms, r.Cache, r.CreatedAt.Format(time.RFC3339), st)
		}
		return tw.Flush()
	case "revoke":
		if len(pos) != 1 {
			return fmt.Errorf("%w: keys revoke KEY_ID", ErrUsage)
		}
		if err := store.Revoke(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "key %s revoked\n", pos[0])
		return nil
	default:
		return fmt.Errorf("%w: unknown keys command %q", ErrUsage, sub)
	}
}

func sanitizeCmd(env Env, args []string) error {
	f := newFlags(env, "sanitize")
	sf := addSanitizeFlags(f)
	explain := f.boolean("explain", false, "add the text of the passage that decided each verdict (passage.text)")
	results := f.boolean("results", false, "judge each text as a tool result (the --sanitize-result-* thresholds and the tool result size limit)")
	if err := f.parse(args); err != nil {
		return err
	}
	var cfg sanitize.Config
	sf.config(&cfg)
	s, err := sanitize.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	w := bufio.NewWriter(env.Stdout)
	defer w.Flush()
	return sanitize.RunJSONL(context.Background(), s, env.Stdin, w, sanitize.JSONLOptions{Explain: *explain, Results: *results})
}

// firewallCmd checks a JSONL table of calls offline against the real
// configuration: the built-in tools' schemas and the tools file.
func firewallCmd(env Env, args []string) error {
	f := newFlags(env, "firewall")
	toolsFile := toolsFlag(f)
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := loadTools(*toolsFile)
	if err != nil {
		return err
	}
	ts, err := app.Tools(app.DefaultToolsConfig())
	if err != nil {
		return err
	}
	fw, err := firewall.New(cfg, ts)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(env.Stdout)
	defer w.Flush()
	return firewall.RunJSONL(context.Background(), fw, env.Stdin, w)
}

func history(env Env, args []string) error {
	f := newFlags(env, "history")
	cf := addConnFlags(f)
	asJSON := f.Bool("json", false, "print JSON")
	pruned := f.Bool("pruned", false, "print the context the model would get (pruned), as a JSON array of OpenAI messages")
	budget := f.Int("budget", 0, "token budget for --pruned (default: the persist stage's)")
	strategy := f.String("strategy", "", "pruning strategy for --pruned: importance, recent, window")
	model := f.String("model", "", "model whose tokenizer counts tokens")
	list := f.Bool("list", false, "list stored conversations")
	user := f.String("user", "", "act on behalf of this user: only the conversations it owns exist (another user's are not found)")
	del := f.Bool("delete", false, "delete the conversation from the store")
	// Accept the id before or after the flags.
	lead, args := leadingArgs(args)
	if err := f.parse(args); err != nil {
		return err
	}
	var id string
	if pos := append(lead, f.Args()...); len(pos) > 0 {
		id = pos[0]
	}
	nc, _, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	c := &persist.Client{NC: nc}
	ctx := context.Background()
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	switch {
	case *list:
		var convs []map[string]any
		if err := c.Call(ctx, persist.SubjectConversations, persist.ConversationsRequest{User: *user}, &convs); err != nil {
			return err
		}
		return enc.Encode(convs)
	case id == "":
		return fmt.Errorf("%w: agentbus history CONVERSATION_ID", ErrUsage)
	case *del:
		if err := c.Call(ctx, persist.SubjectDelete, persist.HistoryRequest{ConversationID: id, User: *user}, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "conversation %s deleted from the store; its events stay in the stream until purged (see docs/operations.md)\n", id)
		return nil
	}
	var rep persist.HistoryReply
	if err := c.Call(ctx, persist.SubjectHistory, persist.HistoryRequest{ConversationID: id, Model: *model, Budget: *budget, Strategy: *strategy, Raw: !*pruned, User: *user}, &rep); err != nil {
		return err
	}
	if *asJSON || *pruned {
		if rep.Messages == nil {
			rep.Messages = []messages.Message{}
		}
		return enc.Encode(rep.Messages)
	}
	if len(rep.Messages) == 0 {
		return fmt.Errorf("conversation %s has no stored messages", id)
	}
	for _, m := range rep.Messages {
		fmt.Fprintf(env.Stdout, "%-9s %s\n", m.Role+":", oneLineText(m))
	}
	fmt.Fprintf(env.Stderr, "(%d messages, %d tokens)\n", rep.Total, rep.Tokens)
	return nil
}

func oneLineText(m messages.Message) string {
	s := m.Content
	for _, tc := range m.ToolCalls {
		s += fmt.Sprintf(" [tool call %s %s]", tc.Function.Name, tc.Function.Arguments)
	}
	return strings.ReplaceAll(s, "\n", "\\n")
}
