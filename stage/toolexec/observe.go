package toolexec

import "github.com/agentbus/agentbus/internal/obs"

// SetMetrics makes the stage count tool calls by tool and firewall
// verdict (call it before the stage runs).
func (h *Handler) SetMetrics(m *obs.Metrics) { h.metrics = m }
