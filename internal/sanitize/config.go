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

// Defaults of Config. The thresholds default to the values chosen when the
// shipped model was trained (see the package doc).
const (
	DefaultMaxBytes       = 32 << 10
	DefaultMaxChars       = 32_000
	DefaultMaxMessages    = 256
	DefaultMaxTotalBytes  = 256 << 10
	DefaultResultMaxBytes = 1 << 20
)

// ErrConfig is wrapped by every Config.Validate error.
var ErrConfig = errors.New("sanitize: invalid config")

// Config configures a Sanitizer. The zero value is valid and means the
// defaults.
type Config struct {
	// MaxBytes is the largest message in bytes. Default 32 KiB.
	MaxBytes int
	// MaxChars is the largest message in runes. Default 32,000 (a pasted
	// document of 30 KB is judged, not refused for its size).
	MaxChars int
	// MaxMessages is the most messages CheckMessages accepts. Default 256.
	MaxMessages int
	// MaxTotalBytes bounds the checked messages together. Default 256 KiB.
	MaxTotalBytes int
	// FlagThreshold: a score at or above it is at least "flag" (input a
	// client supplied). Default: chosen when the model was trained (see the
	// package doc).
	FlagThreshold float64
	// BlockThreshold: a score at or above it triggers Action (input a client
	// supplied). Default: chosen when the model was trained. Must be >=
	// FlagThreshold.
	BlockThreshold float64
	// ResultFlagThreshold and ResultBlockThreshold are the thresholds for
	// tool results (CheckResult) and for "tool" messages in a client's turn.
	// Default: chosen when the model was trained. ResultBlockThreshold must
	// be >= ResultFlagThreshold.
	ResultFlagThreshold  float64
	ResultBlockThreshold float64
	// ResultMaxBytes is the largest tool result CheckResult judges; a larger
	// one is blocked. Default 1 MiB.
	ResultMaxBytes int
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
	if m != nil {
		c.FlagThreshold, c.BlockThreshold = thresholds(c.FlagThreshold, c.BlockThreshold, float64(m.flagThreshold), float64(m.blockThreshold))
		c.ResultFlagThreshold, c.ResultBlockThreshold = thresholds(c.ResultFlagThreshold, c.ResultBlockThreshold, float64(m.resultFlag), float64(m.resultBlock))
	}
	if c.ResultMaxBytes == 0 {
		c.ResultMaxBytes = DefaultResultMaxBytes
	}
	if c.Action == "" {
		c.Action = ActionBlock
	}
	if c.Roles == nil {
		c.Roles = []string{"user", "system", "developer", "tool"}
	}
	return c
}

// thresholds fills unset (zero) thresholds with the trained ones, keeping
// flag <= block when only one was set: a block threshold set below the
// trained flag threshold lowers the flag threshold with it, and a flag
// threshold set above the trained block threshold raises it.
func thresholds(flag, block, tFlag, tBlock float64) (float64, float64) {
	switch {
	case flag == 0 && block == 0:
		return tFlag, tBlock
	case flag == 0:
		return min(tFlag, block), block
	case block == 0:
		return flag, max(tBlock, flag)
	}
	return flag, block
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
	if c.ResultFlagThreshold < 0 || c.ResultFlagThreshold > 1 {
		bad("ResultFlagThreshold %v is outside [0, 1]", c.ResultFlagThreshold)
	}
	if c.ResultBlockThreshold < 0 || c.ResultBlockThreshold > 1 {
		bad("ResultBlockThreshold %v is outside [0, 1]", c.ResultBlockThreshold)
	}
	if c.ResultFlagThreshold > 0 && c.ResultBlockThreshold > 0 && c.ResultBlockThreshold < c.ResultFlagThreshold {
		bad("ResultBlockThreshold %v is below ResultFlagThreshold %v", c.ResultBlockThreshold, c.ResultFlagThreshold)
	}
	if c.ResultMaxBytes < 0 {
		bad("ResultMaxBytes %d is negative", c.ResultMaxBytes)
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
