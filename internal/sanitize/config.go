package sanitize

import (
	"errors"
	"fmt"
)

// Actions: what a score at or above Config.BlockThreshold does.
const (
	ActionBlock = "block"
	ActionFlag  = "flag"
)

// Defaults of Config. The thresholds default to the values chosen on
// deepset_train.jsonl when the shipped model was trained.
const (
	DefaultMaxBytes      = 32 << 10
	DefaultMaxChars      = 16_000
	DefaultMaxMessages   = 256
	DefaultMaxTotalBytes = 256 << 10
)

// ErrConfig is wrapped by every Config.Validate error.
var ErrConfig = errors.New("sanitize: invalid config")

// Config configures a Sanitizer. The zero value is valid and means the
// defaults.
type Config struct {
	// MaxBytes is the largest message in bytes. Default 32 KiB.
	MaxBytes int
	// MaxChars is the largest message in runes. Default 16,000.
	MaxChars int
	// MaxMessages is the most messages CheckMessages accepts. Default 256.
	MaxMessages int
	// MaxTotalBytes bounds the checked messages together. Default 256 KiB.
	MaxTotalBytes int
	// FlagThreshold: a score at or above it is at least "flag". Default:
	// chosen on the training data (see the package doc), about 0.5.
	FlagThreshold float64
	// BlockThreshold: a score at or above it triggers Action. Default: chosen
	// on the training data, about 0.75. Must be >= FlagThreshold.
	BlockThreshold float64
	// Action is what a score >= BlockThreshold does: "block" (default) or
	// "flag" (admit, but mark). Encoding and limit violations always block.
	Action string
	// Roles are the message roles CheckMessages judges. Default: user,
	// system, developer and tool (everything a client or a tool supplied).
	Roles []string
}

// withDefaults returns c with zero fields replaced by defaults; m supplies
// the trained thresholds.
func (c Config) withDefaults(m *model) Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxChars == 0 {
		c.MaxChars = DefaultMaxChars
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.MaxTotalBytes == 0 {
		c.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if c.FlagThreshold == 0 && m != nil {
		c.FlagThreshold = float64(m.flagThreshold)
	}
	if c.BlockThreshold == 0 && m != nil {
		c.BlockThreshold = float64(m.blockThreshold)
	}
	if c.Action == "" {
		c.Action = ActionBlock
	}
	if c.Roles == nil {
		c.Roles = []string{"user", "system", "developer", "tool"}
	}
	return c
}

// Validate reports every invalid field, joined. Zero fields are valid (they
// mean the default).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	if c.MaxBytes < 0 {
		bad("MaxBytes %d is negative", c.MaxBytes)
	}
	if c.MaxChars < 0 {
		bad("MaxChars %d is negative", c.MaxChars)
	}
	if c.MaxMessages < 0 {
		bad("MaxMessages %d is negative", c.MaxMessages)
	}
	if c.MaxTotalBytes < 0 {
		bad("MaxTotalBytes %d is negative", c.MaxTotalBytes)
	}
	if c.FlagThreshold < 0 || c.FlagThreshold > 1 {
		bad("FlagThreshold %v is outside [0, 1]", c.FlagThreshold)
	}
	if c.BlockThreshold < 0 || c.BlockThreshold > 1 {
		bad("BlockThreshold %v is outside [0, 1]", c.BlockThreshold)
	}
	if c.FlagThreshold > 0 && c.BlockThreshold > 0 && c.BlockThreshold < c.FlagThreshold {
		bad("BlockThreshold %v is below FlagThreshold %v", c.BlockThreshold, c.FlagThreshold)
	}
	switch c.Action {
	case "", ActionBlock, ActionFlag:
	default:
		bad("Action %q is not %q or %q", c.Action, ActionBlock, ActionFlag)
	}
	for _, r := range c.Roles {
		if r == "" {
			bad("Roles contains an empty role")
		}
	}
	return errors.Join(errs...)
}
