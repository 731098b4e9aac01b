package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentbus/agentbus/messages"
	"github.com/agentbus/agentbus/pipeline"
)

// Config configures the audit stage.
type Config struct {
	// NATSURL is the agentbus NATS server. Required.
	NATSURL string
	// Creds is the stage's NATS credential file. Default "": anonymous
	// (only a server without authentication accepts it).
	Creds string
	// ContractFile is the stage's contract (JSON, pipeline.ParseContract).
	// Required.
	ContractFile string
}

// Record is one line of the audit trail.
type Record struct {
	RequestID      string    `json:"request_id"`
	ConversationID string    `json:"conversation_id"`
	User           string    `json:"user"`
	Outcome        string    `json:"outcome"` // completed, rejected or failed
	Model          string    `json:"model,omitempty"`
	TotalTokens    int       `json:"total_tokens,omitempty"`
	CostUSD        float64   `json:"cost_usd,omitempty"`
	Code           string    `json:"code,omitempty"`
	Tools          []string  `json:"tools,omitempty"`
	At             time.Time `json:"at"`
}

// Auditor writes one Record per ended turn. A turn's terminal event can be
// delivered more than once (after a crash, before its ack); a reader of
// the trail keys it by request id.
type Auditor struct {
	mu sync.Mutex
	w  io.Writer
}

// Stage is the auditor as a pipeline stage under contract c.
func (a *Auditor) Stage(c pipeline.Contract) pipeline.Stage {
	return pipeline.Stage{
		Contract: c,
		Handlers: map[string]message.HandlerFunc{
			messages.EventCompleted: a.completed,
			messages.EventRejected:  a.rejected,
			messages.EventFailed:    a.failed,
		},
		HandlerTimeout: 5 * time.Second,
	}
}

func (a *Auditor) completed(msg *message.Message) ([]*message.Message, error) {
	c, err := pipeline.Decode[messages.Completed](msg)
	if err != nil {
		return nil, err // not JSON: a permanent error, to the dead-letter queue
	}
	r := Record{RequestID: c.RequestID, ConversationID: c.ConversationID, User: c.User, Outcome: messages.EventCompleted,
		Model: c.Model, TotalTokens: c.Usage.TotalTokens, CostUSD: c.CostUSD, At: c.CompletedAt}
	for _, v := range c.ToolVerdicts {
		r.Tools = append(r.Tools, v.Tool)
	}
	return nil, a.write(r)
}

func (a *Auditor) rejected(msg *message.Message) ([]*message.Message, error) {
	rj, err := pipeline.Decode[messages.Rejected](msg)
	if err != nil {
		return nil, err
	}
	return nil, a.write(Record{RequestID: rj.RequestID, ConversationID: rj.ConversationID, User: rj.User,
		Outcome: messages.EventRejected, Code: rj.Code, At: rj.At})
}

func (a *Auditor) failed(msg *message.Message) ([]*message.Message, error) {
	f, err := pipeline.Decode[messages.Failed](msg)
	if err != nil {
		return nil, err
	}
	return nil, a.write(Record{RequestID: f.RequestID, ConversationID: f.ConversationID, User: f.User,
		Outcome: messages.EventFailed, Code: f.Code, At: f.At})
}

// write appends one line; an error (a full disk) is retried by the
// runtime and, if it lasts, the event goes to the dead-letter queue.
func (a *Auditor) write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(append(b, '\n'))
	return err
}

// Run runs the audit stage until ctx ends, then drains it.
func Run(ctx context.Context, cfg Config, w io.Writer, log *slog.Logger) error {
	if cfg.NATSURL == "" || cfg.ContractFile == "" {
		return errors.New("audit stage: a NATS URL and a contract file are required")
	}
	raw, err := os.ReadFile(cfg.ContractFile)
	if err != nil {
		return err
	}
	contract, err := pipeline.ParseContract(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.ContractFile, err)
	}
	pc := pipeline.DefaultConfig()
	pc.NATSURL = cfg.NATSURL
	pc.Name = "agentbus-" + contract.Stage
	if cfg.Creds != "" {
		pc.Credentials = pipeline.CredsFile(cfg.Creds)
	}
	rt, err := pipeline.New(ctx, pc, log)
	if err != nil {
		return err
	}
	defer rt.Close()
	if _, err := rt.AddStage((&Auditor{w: w}).Stage(contract)); err != nil {
		return err
	}
	return rt.Run(ctx)
}
