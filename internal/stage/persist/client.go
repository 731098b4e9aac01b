package persist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Client calls the persist service over NATS. It is what the llm stage and
// the CLI use to read history.
type Client struct {
	NC      *nats.Conn
	Timeout time.Duration // default 5s
}

// ErrServiceError is wrapped by errors the persist service reported.
var ErrServiceError = errors.New("persist service error")

// Call sends a request to one of the persist subjects and decodes the reply.
func (c *Client) Call(ctx context.Context, subject string, req any, out any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	to := c.Timeout
	if to == 0 {
		to = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	m, err := c.NC.RequestWithContext(ctx, subject, b)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no persist stage is running (%s): %w", subject, err)
		}
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code == "404" {
		return fmt.Errorf("%w: %s", ErrNotFound, m.Header.Get(micro.ErrorHeader))
	} else if code != "" {
		return fmt.Errorf("%w %s: %s", ErrServiceError, code, m.Header.Get(micro.ErrorHeader))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(m.Data, out)
}

// History implements the llm stage's History: the conversation's history
// pruned to the persist stage's budget, tokenised for model, read on
// behalf of user (another user's conversation is ErrNotFound).
func (c *Client) History(ctx context.Context, conversationID, user, model string) ([]messages.Message, error) {
	var rep HistoryReply
	if err := c.Call(ctx, SubjectHistory, HistoryRequest{ConversationID: conversationID, Model: model, User: user}, &rep); err != nil {
		return nil, err
	}
	return rep.Messages, nil
}

// ErrNotFound is wrapped by errors for a conversation the service answered
// 404 for: unknown, or owned by another user.
var ErrNotFound = errors.New("conversation not found")

// Owns reports nil when user owns the stored conversation, an error
// wrapping ErrNotFound when it does not exist or another user owns it.
func (c *Client) Owns(ctx context.Context, conversationID, user string) error {
	return c.Call(ctx, SubjectOwner, HistoryRequest{ConversationID: conversationID, User: user}, nil)
}
