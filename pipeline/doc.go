// Package pipeline is the runtime every agentbus stage shares: the NATS
// connection (or an embedded JetStream server), the streams and durable
// consumers, the Watermill router with its middleware, the dead-letter
// queue, health as NATS micro services, logging and graceful shutdown.
//
// A stage is a Contract (its name, the events it consumes and produces,
// the buckets and subjects it uses: its NATS identity may do exactly
// that), a handler per consumed event and how long one run may take:
//
//	rt, err := pipeline.New(ctx, pipeline.DefaultConfig(), log)
//	stats, err := rt.AddStage(pipeline.Stage{
//		Contract: pipeline.Contract{Stage: "guard",
//			Consumes: []string{messages.EventReceived}, Produces: []string{messages.EventAdmitted}},
//		HandlerTimeout: 5 * time.Second,
//		Handlers: map[string]message.HandlerFunc{
//			messages.EventReceived: func(msg *message.Message) ([]*message.Message, error) {
//				turn, err := pipeline.Decode[messages.Turn](msg)
//				if err != nil {
//					return nil, err // permanent: dead-lettered at once
//				}
//				out, err := pipeline.NewEvent(messages.EventAdmitted, turn.RequestID, 0, messages.Admitted{Turn: turn})
//				return []*message.Message{out}, err
//			},
//		},
//	})
//	err = rt.Run(ctx) // until ctx is done, then drains
//
// A program of its own adds a stage to a running agentbus this way: it
// declares its contract as JSON (ParseContract), the operator issues its
// credential from the same file (agentbus nats creds --contract FILE) and
// the program connects with it (CredsFile). examples/audit-stage is one.
// Package pipelinetest unit-tests a stage's handlers without NATS: it
// builds messages as the runtime delivers them and has an in-memory step
// store.
//
// Guarantees:
//   - streams and consumers are provisioned once, idempotently, at start
//     (never per publish); N processes adding the same stage share its
//     durable consumers and split the messages;
//   - every outgoing event has a deterministic id (messages.MsgID) sent as
//     Nats-Msg-Id, so a re-publish is dropped by the stream;
//   - a handler error is retried in-process, then NAKed with a growing
//     delay; after Consumer.MaxDeliveries deliveries, or at once for a
//     Permanent error, the message goes to the stage's dead-letter subject
//     with its payload, subject, attempts and a redacted reason; a failed
//     dead-letter publish is a NAK, never a loss; a panic is recovered and
//     treated like an error;
//   - a message whose deliveries never completed (the process died while
//     handling it) is dead-lettered instead of being run again forever;
//   - Shutdown stops taking work, lets in-flight handlers finish and flushes
//     their acks before it closes anything;
//   - each stage instance answers health, readiness and liveness on
//     HealthSubject(stage) (every instance answers: scatter-gather) and
//     publishes its counters in the micro STATS of ServiceName(stage).
package pipeline
