package pipeline

import (
	"regexp"
)

var secretPattern = regexp.MustCompile(`(?i)(sk-[a-z0-9_\-]{6,}|ab-[a-z0-9]{6,}_[a-z0-9_\-]{8,}|bearer\s+[a-z0-9._\-]{6,}|api[_-]?key["'=:\s]+[a-z0-9._\-]{6,})`)

// Redact removes anything that looks like a credential from s and bounds
// its length. It is applied to every dead-letter reason.
func Redact(s string) string {
	s = secretPattern.ReplaceAllString(s, "[REDACTED]")
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}
