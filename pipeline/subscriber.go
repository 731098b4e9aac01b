package pipeline

import "github.com/nats-io/nats.go"

// Subscriber delivers the messages of a core NATS subject (wildcards
// allowed) to fn until stop is called: what a stage needs to hear
// notifications that are not events (a cancelled turn, another replica's
// commit), without NATS types in its dependencies. CoreNATS adapts a
// connection; a handler's unit test passes a fake.
type Subscriber interface {
	Subscribe(subject string, fn func(subject string, data []byte)) (stop func() error, err error)
}

// CoreNATS is nc as a Subscriber.
func CoreNATS(nc *nats.Conn) Subscriber { return coreNATS{nc} }

type coreNATS struct{ nc *nats.Conn }

func (c coreNATS) Subscribe(subject string, fn func(subject string, data []byte)) (func() error, error) {
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Subject, m.Data) })
	if err != nil {
		return nil, err
	}
	return sub.Unsubscribe, nil
}
