package pipeline

import (
	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go/jetstream"
)

// What only tests use, exported to the external tests of this package:
// the Watermill publisher and subscriber configured as the runtime's (for
// Watermill's universal pub/sub suite) and the push consumer of an older
// agentbus (replaced by a pull consumer at start).
type PubSubConfig = pubSubConfig

var (
	NewPubSub      = newPubSub
	TopicEvent     = topicEvent
	TopicSubject   = topicSubject
	TopicStream    = topicStream
	EnsureConsumer = func(js jetstream.JetStream, stage, event string, cc ConsumerConfig) error {
		return ensurePushConsumer(js, messages.StreamTurns, stage, event, cc)
	}
)
