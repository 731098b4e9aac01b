package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	_ "time/tzdata" // IANA zones even on hosts without /usr/share/zoneinfo
)

// ClockConfig configures the current_time tool.
type ClockConfig struct {
	// Now returns the current time (default time.Now). Tests inject a
	// fixed clock.
	Now func() time.Time
	// DefaultZone is the zone used when the call names none (default UTC).
	DefaultZone *time.Location
}

// Validate reports invalid fields; every field is optional.
func (c ClockConfig) Validate() error { return nil }

// Clock is the "current_time" tool: {"timezone": optional IANA name} ->
// the current time in RFC 3339 ("2026-03-01T10:00:00+01:00").
type Clock struct {
	now  func() time.Time
	zone *time.Location
}

// NewClock returns the current_time tool.
func NewClock(cfg ClockConfig) (*Clock, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Clock{now: cfg.Now, zone: cfg.DefaultZone}
	if c.now == nil {
		c.now = time.Now
	}
	if c.zone == nil {
		c.zone = time.UTC
	}
	return c, nil
}

// Spec describes the tool.
func (c *Clock) Spec() Spec {
	return Spec{
		Name:        "current_time",
		Description: "Return the current date and time in RFC 3339, in an IANA time zone (default " + c.zone.String() + ").",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string","maxLength":64,"description":"IANA time zone such as Europe/Paris or America/New_York"}},"additionalProperties":false}`),
	}
}

// Call returns the time in the requested zone.
func (c *Clock) Call(ctx context.Context, args json.RawMessage) (string, error) {
	var in struct {
		Timezone string `json:"timezone"`
	}
	if err := decodeArgs(args, &in); err != nil {
		return "", err
	}
	loc := c.zone
	if in.Timezone != "" {
		if !validZoneName(in.Timezone) {
			return "", fmt.Errorf("unknown time zone %q", in.Timezone)
		}
		l, err := time.LoadLocation(in.Timezone)
		if err != nil {
			return "", fmt.Errorf("unknown time zone %q", in.Timezone)
		}
		loc = l
	}
	return c.now().In(loc).Format(time.RFC3339), nil
}

// validZoneName accepts IANA-style names only, so a zone name can never be
// a path ("../../etc/passwd") or "Local" (the server's zone).
func validZoneName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "Local" || s[0] == '/' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-' || c == '+') {
			return false
		}
		if c == '/' && i+1 < len(s) && s[i+1] == '/' {
			return false
		}
	}
	return true
}
