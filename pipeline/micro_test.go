package pipeline

import (
	"testing"

	"github.com/nats-io/nats.go/micro"
)

// The stages' micro endpoint options reach the stage service (read from
// nats.go's unexported option type; a renamed field fails here).
func TestStageServiceEndpointOptions(t *testing.T) {
	o, err := readEndpointOpts([]micro.EndpointOpt{
		micro.WithEndpointSubject("agentbus.persist.history"),
		micro.WithEndpointMetadata(map[string]string{"description": "d"}),
		micro.WithEndpointQueueGroup("qg"),
	})
	if err != nil || o.subject != "agentbus.persist.history" || o.metadata["description"] != "d" || o.queueGroup != "qg" || o.qgDisabled {
		t.Fatalf("%+v %v", o, err)
	}
	o, err = readEndpointOpts([]micro.EndpointOpt{micro.WithEndpointQueueGroupDisabled()})
	if err != nil || !o.qgDisabled || o.subject != "" {
		t.Fatalf("%+v %v", o, err)
	}
	if o, err := readEndpointOpts(nil); err != nil || o.subject != "" {
		t.Fatalf("%+v %v", o, err)
	}
}
