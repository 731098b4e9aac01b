package pipeline_test

import (
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/agentbus/agentbus/pipeline"
)

func TestZZMut(t *testing.T) {
	mut := os.Getenv("WM_MUT")
	if mut == "" {
		t.Skip()
	}
	cc := pubSubConsumer()
	perTopic := true
	switch mut {
	case "turns":
		perTopic = false
	case "default_ackwait":
		cc = pipeline.DefaultConfig().Consumer
	case "slow_nak":
		cc.NakDelay = 20 * time.Second
	}
	env := newPubSubEnv(t, perTopic, cc)
	tests.TestPubSub(t, tests.Features{ConsumerGroups: true, Persistent: true, ForceShort: true},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return env.group(t, "wmtest") },
		func(t *testing.T, g string) (message.Publisher, message.Subscriber) { return env.group(t, g) })
}
