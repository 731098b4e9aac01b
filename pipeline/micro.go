package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/agentbus/agentbus/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// stageService is a stage's NATS micro service. It speaks the micro
// protocol (PING, INFO, STATS on $SRV.*; endpoints answering requests)
// like nats.go's micro package, whose Service interface it implements for
// the stages' own endpoints, with one difference that is its reason to
// exist: its STATS carry the stage's real work. Each consumed event is an
// endpoint there (name: the event, subject: the event's subjects, queue
// group: the durable consumer) whose num_requests, num_errors and
// processing times are the stage's deliveries of that event, so that
// `nats micro stats agentbus-llm` shows what the stage did, not just how
// often its health was asked. (nats.go's micro keeps endpoint statistics
// private to requests it served itself.)
type stageService struct {
	nc      *nats.Conn
	id      string
	cfg     micro.Config
	events  []*eventObs
	data    func() any // each endpoint's STATS data
	started time.Time

	mu        sync.Mutex
	endpoints []*microEndpoint
	subs      []*nats.Subscription
	stopped   bool
}

type microEndpoint struct {
	info    micro.EndpointInfo
	handler micro.Handler
	sub     *nats.Subscription

	requests, errors int
	processing       time.Duration
	lastErr          string
}

// defaultQueueGroup is micro's default queue group.
const defaultQueueGroup = "q"

func newStageService(nc *nats.Conn, cfg micro.Config, events []*eventObs, data func() any) (*stageService, error) {
	s := &stageService{nc: nc, id: nuid.Next(), cfg: cfg, events: events, data: data, started: time.Now().UTC()}
	for _, v := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		for _, kind := range [][2]string{{"", ""}, {cfg.Name, ""}, {cfg.Name, s.id}} {
			subj, err := micro.ControlSubject(v, kind[0], kind[1])
			if err != nil {
				_ = s.Stop()
				return nil, err
			}
			sub, err := nc.Subscribe(subj, s.verb(v))
			if err != nil {
				_ = s.Stop()
				return nil, err
			}
			s.subs = append(s.subs, sub)
		}
	}
	return s, nil
}

func (s *stageService) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: s.cfg.Name, ID: s.id, Version: s.cfg.Version, Metadata: s.cfg.Metadata}
}

func (s *stageService) verb(v micro.Verb) nats.MsgHandler {
	return func(m *nats.Msg) {
		var resp any
		switch v {
		case micro.PingVerb:
			resp = micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType}
		case micro.InfoVerb:
			resp = s.Info()
		case micro.StatsVerb:
			resp = s.Stats()
		}
		b, err := json.Marshal(resp)
		if err != nil {
			return
		}
		_ = m.Respond(b)
	}
}

// AddEndpoint registers an endpoint, honouring micro's endpoint options
// (subject, metadata, queue group, queue group disabled).
func (s *stageService) AddEndpoint(name string, h micro.Handler, opts ...micro.EndpointOpt) error {
	o, err := readEndpointOpts(opts)
	if err != nil {
		return err
	}
	subject := name
	if o.subject != "" {
		subject = o.subject
	}
	queue := defaultQueueGroup
	if s.cfg.QueueGroup != "" {
		queue = s.cfg.QueueGroup
	}
	if o.queueGroup != "" {
		queue = o.queueGroup
	}
	if o.qgDisabled {
		queue = ""
	}
	ep := &microEndpoint{info: micro.EndpointInfo{Name: name, Subject: subject, QueueGroup: queue, Metadata: o.metadata}, handler: h}
	cb := func(m *nats.Msg) { s.serve(ep, m) }
	if queue == "" {
		ep.sub, err = s.nc.Subscribe(subject, cb)
	} else {
		ep.sub, err = s.nc.QueueSubscribe(subject, queue, cb)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.endpoints = append(s.endpoints, ep)
	s.mu.Unlock()
	return nil
}

func (s *stageService) serve(ep *microEndpoint, m *nats.Msg) {
	start := time.Now()
	req := &microRequest{msg: m}
	ep.handler.Handle(req)
	d := time.Since(start)
	s.mu.Lock()
	ep.requests++
	ep.processing += d
	if req.err != nil {
		ep.errors++
		ep.lastErr = req.err.Error()
	}
	s.mu.Unlock()
}

// AddGroup returns a group whose endpoints' subjects are prefixed.
func (s *stageService) AddGroup(prefix string, _ ...micro.GroupOpt) micro.Group {
	return microGroup{s: s, prefix: prefix}
}

// Info lists the service's endpoints, its consumed events first.
func (s *stageService) Info() micro.Info {
	info := micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType, Description: s.cfg.Description, Endpoints: []micro.EndpointInfo{}}
	for _, o := range s.events {
		info.Endpoints = append(info.Endpoints, micro.EndpointInfo{Name: o.event, Subject: o.subject, QueueGroup: DurableName(o.stage, o.event),
			Metadata: map[string]string{"kind": "jetstream-consumer", "stream": messages.StreamTurns, "durable": DurableName(o.stage, o.event)}})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range s.endpoints {
		info.Endpoints = append(info.Endpoints, ep.info)
	}
	return info
}

// Stats are each endpoint's counts: for a consumed event, the stage's
// deliveries of it (requests), those that failed or were dead-lettered
// (errors) and the time spent on them.
func (s *stageService) Stats() micro.Stats {
	var data json.RawMessage
	if s.data != nil {
		data, _ = json.Marshal(s.data())
	}
	st := micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started, Endpoints: []*micro.EndpointStats{}}
	add := func(name, subject, queue string, n, errs int64, proc time.Duration, last string) {
		e := &micro.EndpointStats{Name: name, Subject: subject, QueueGroup: queue, NumRequests: int(n), NumErrors: int(errs),
			LastError: last, ProcessingTime: proc, Data: data}
		if n > 0 {
			e.AverageProcessingTime = proc / time.Duration(n)
		}
		st.Endpoints = append(st.Endpoints, e)
	}
	for _, o := range s.events {
		es := o.stats()
		add(es.Name, es.Subject, es.Queue, es.Requests, es.Errors, es.Processing, es.LastError)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range s.endpoints {
		add(ep.info.Name, ep.info.Subject, ep.info.QueueGroup, int64(ep.requests), int64(ep.errors), ep.processing, ep.lastErr)
	}
	return st
}

// Reset zeroes the request endpoints' counts (a consumed event's counts
// are the stage's and stay).
func (s *stageService) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range s.endpoints {
		ep.requests, ep.errors, ep.processing, ep.lastErr = 0, 0, 0, ""
	}
	s.started = time.Now().UTC()
}

// Stop drains the service's subscriptions.
func (s *stageService) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	for _, sub := range s.subs {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	for _, ep := range s.endpoints {
		if err := ep.sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stopped reports whether Stop ran.
func (s *stageService) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

var _ micro.Service = (*stageService)(nil)

type microGroup struct {
	s      *stageService
	prefix string
}

func (g microGroup) AddGroup(prefix string, _ ...micro.GroupOpt) micro.Group {
	return microGroup{s: g.s, prefix: g.prefix + "." + prefix}
}

func (g microGroup) AddEndpoint(name string, h micro.Handler, opts ...micro.EndpointOpt) error {
	o, err := readEndpointOpts(opts)
	if err != nil {
		return err
	}
	subject := name
	if o.subject != "" {
		subject = o.subject
	}
	return g.s.AddEndpoint(name, h, append(opts, micro.WithEndpointSubject(g.prefix+"."+subject))...)
}

// microRequest implements micro.Request on a NATS message and remembers
// whether the handler answered with an error (for the STATS).
type microRequest struct {
	msg *nats.Msg
	err error
}

func (r *microRequest) Respond(b []byte, opts ...micro.RespondOpt) error {
	m := &nats.Msg{Data: b}
	for _, o := range opts {
		o(m)
	}
	if err := r.msg.RespondMsg(m); err != nil {
		r.err = fmt.Errorf("%w: %s", micro.ErrRespond, err)
		return r.err
	}
	return nil
}

func (r *microRequest) RespondJSON(v any, opts ...micro.RespondOpt) error {
	b, err := json.Marshal(v)
	if err != nil {
		return micro.ErrMarshalResponse
	}
	return r.Respond(b, opts...)
}

func (r *microRequest) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" || description == "" {
		return fmt.Errorf("%w: error code and description", micro.ErrArgRequired)
	}
	m := &nats.Msg{Header: nats.Header{micro.ErrorHeader: []string{description}, micro.ErrorCodeHeader: []string{code}}}
	for _, o := range opts {
		o(m)
	}
	m.Data = data
	if err := r.msg.RespondMsg(m); err != nil {
		r.err = err
		return err
	}
	r.err = fmt.Errorf("%s:%s", code, description)
	return nil
}

func (r *microRequest) Data() []byte           { return r.msg.Data }
func (r *microRequest) Headers() micro.Headers { return micro.Headers(r.msg.Header) }
func (r *microRequest) Subject() string        { return r.msg.Subject }
func (r *microRequest) Reply() string          { return r.msg.Reply }

// endpointOpts are the options micro.EndpointOpt functions set.
type endpointOpts struct {
	subject, queueGroup string
	qgDisabled          bool
	metadata            map[string]string
}

// readEndpointOpts applies micro's endpoint options to a value of their
// (unexported) option type and reads the fields back by name, so the
// stages keep using micro.WithEndpointSubject and friends. A nats.go that
// renamed them fails here, loudly, and in TestStageServiceEndpointOptions.
func readEndpointOpts(opts []micro.EndpointOpt) (endpointOpts, error) {
	var out endpointOpts
	if len(opts) == 0 {
		return out, nil
	}
	t := reflect.TypeOf(opts[0]).In(0).Elem()
	v := reflect.New(t)
	for _, o := range opts {
		res := reflect.ValueOf(o).Call([]reflect.Value{v})
		if err, _ := res[0].Interface().(error); err != nil {
			return out, err
		}
	}
	e := v.Elem()
	field := func(name string, kind reflect.Kind) (reflect.Value, error) {
		f := e.FieldByName(name)
		if !f.IsValid() || f.Kind() != kind {
			return f, fmt.Errorf("micro endpoint options: no %s field %q in %s (nats.go changed)", kind, name, t)
		}
		return f, nil
	}
	var errs []error
	if f, err := field("subject", reflect.String); err == nil {
		out.subject = f.String()
	} else {
		errs = append(errs, err)
	}
	if f, err := field("queueGroup", reflect.String); err == nil {
		out.queueGroup = f.String()
	} else {
		errs = append(errs, err)
	}
	if f, err := field("qgDisabled", reflect.Bool); err == nil {
		out.qgDisabled = f.Bool()
	} else {
		errs = append(errs, err)
	}
	if f, err := field("metadata", reflect.Map); err == nil && !f.IsNil() {
		out.metadata = make(map[string]string, f.Len())
		for it := f.MapRange(); it.Next(); {
			out.metadata[it.Key().String()] = it.Value().String()
		}
	} else if err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}
