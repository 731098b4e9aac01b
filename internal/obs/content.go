package obs

import (
	"encoding/json"

	"github.com/agentbus/agentbus/messages"
)

// maxContentAttr bounds a traced prompt or answer (--trace-content).
const maxContentAttr = 16 << 10

// contentJSON is messages as JSON for a span attribute, cut at
// maxContentAttr bytes.
func contentJSON(msgs []messages.Message) string {
	b, err := json.Marshal(msgs)
	if err != nil {
		return ""
	}
	if len(b) > maxContentAttr {
		b = append(b[:maxContentAttr], "…"...)
	}
	return string(b)
}
