// Package pipeline is the runtime every agentbus stage shares: the NATS
// connection (or an embedded JetStream server), the streams and durable
// consumers, the Watermill router with its middleware, the dead-letter
// queue, health as NATS micro services, logging and graceful shutdown.
//
// A stage is a name and a handler per consumed event:
//
//	rt, err := pipeline.New(ctx, pipeline.DefaultConfig(), log)
//	stats, err := rt.AddStage(pipeline.Stage{
//		Name: "guard",
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
