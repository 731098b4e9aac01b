package messages

import "slices"

// Stage names: each names a stage's durable consumers, its dead-letter
// subject ([DLQSubject]) and its NATS identity.
const (
	StageIngest   = "ingest"
	StageGuard    = "guard"
	StageLLM      = "llm"
	StageToolexec = "toolexec"
	StagePersist  = "persist"
)

// Stages lists agentbus's stages in pipeline order.
var Stages = []string{StageIngest, StageGuard, StageLLM, StageToolexec, StagePersist}

// Route is where one event goes: the stages that publish it and the stages
// that consume it. Each consuming stage has its own durable consumer of the
// event (its replicas share it), so every consuming stage sees every event.
type Route struct {
	Event string
	// From are the stages that publish the event.
	From []string
	// To are the stages that consume it (a durable consumer each).
	To []string
}

// Routes is the flow of a turn, one route per event in [Events] order: the
// one place that says which event goes to which stage. The stages'
// contracts (their consumers, what they may publish, hence their NATS
// permissions) are derived from it, docs/nats-clients.md documents it (a
// test compares the two) and redrive checks a dead letter against it.
//
// Besides these durable consumers, ingest follows the events of its own
// requests on core NATS ([ReplyFilter]) to answer its clients, and the
// operator may publish received turns. Any stage may publish failed: the
// runtime ends a turn whose deadline passed, or whose next event would not
// fit the bus, with a failed event on behalf of the stage that holds it.
var Routes = []Route{
	{Event: EventReceived, From: []string{StageIngest}, To: []string{StageGuard}},
	{Event: EventAdmitted, From: []string{StageGuard}, To: []string{StageLLM}},
	{Event: EventRejected, From: []string{StageGuard}},
	{Event: EventToolCalls, From: []string{StageLLM}, To: []string{StageToolexec}},
	{Event: EventTooled, From: []string{StageToolexec}, To: []string{StageLLM}},
	// toolexec ends a turn whose model called the client's own tools.
	{Event: EventGenerated, From: []string{StageLLM, StageToolexec}, To: []string{StagePersist}},
	// guard corrects its token rate limits with the provider's usage.
	{Event: EventCompleted, From: []string{StagePersist}, To: []string{StageGuard}},
	{Event: EventFailed, From: Stages},
}

// RouteOf returns the route of event.
func RouteOf(event string) (Route, bool) {
	i := slices.IndexFunc(Routes, func(r Route) bool { return r.Event == event })
	if i < 0 {
		return Route{}, false
	}
	return Routes[i], true
}

// ConsumedBy lists the events stage consumes, in [Events] order.
func ConsumedBy(stage string) []string {
	var out []string
	for _, r := range Routes {
		if slices.Contains(r.To, stage) {
			out = append(out, r.Event)
		}
	}
	return out
}

// ProducedBy lists the events stage publishes, in [Events] order.
func ProducedBy(stage string) []string {
	var out []string
	for _, r := range Routes {
		if slices.Contains(r.From, stage) {
			out = append(out, r.Event)
		}
	}
	return out
}
