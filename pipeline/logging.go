package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
)

// NewLogger builds the process logger: tint (colour, human) when w is a
// terminal or format is "text", JSON otherwise or when format is "json".
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	term := false
	if f, ok := w.(*os.File); ok {
		term = isatty.IsTerminal(f.Fd())
	}
	switch {
	case format == "json" || (format != "text" && !term):
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	default:
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: !term}))
	}
}

// ParseLevel turns "debug", "info", "warn" or "error" into a level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// WatermillLogger bridges Watermill's logging into slog. Watermill's Info
// messages (one per subscriber start and stop) go to Debug: the stage logs
// what matters itself.
func WatermillLogger(l *slog.Logger) watermill.LoggerAdapter {
	return quietClose{watermill.NewSlogLoggerWithLevelMapping(l.With("component", "watermill"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	}), l.Handler()}
}

// quietClose demotes the one error Watermill logs on every graceful
// shutdown: Runtime.Shutdown drains the subscriber connections itself
// (so in-flight acks are flushed) before the router closes the
// subscribers, whose own Drain then finds the connection closed.
//
// It also skips Watermill's Debug and Trace calls (several per message)
// when they are disabled: the adapter would build their attributes first.
type quietClose struct {
	watermill.LoggerAdapter
	h slog.Handler
}

func (q quietClose) Debug(msg string, fields watermill.LogFields) {
	if q.h.Enabled(context.Background(), slog.LevelDebug) {
		q.LoggerAdapter.Debug(msg, fields)
	}
}

func (q quietClose) Info(msg string, fields watermill.LogFields) {
	if q.h.Enabled(context.Background(), slog.LevelDebug) { // Info is mapped to Debug
		q.LoggerAdapter.Info(msg, fields)
	}
}

func (q quietClose) Trace(msg string, fields watermill.LogFields) {
	if q.h.Enabled(context.Background(), watermill.LevelTrace) {
		q.LoggerAdapter.Trace(msg, fields)
	}
}

func (q quietClose) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, nats.ErrConnectionClosed) {
		q.LoggerAdapter.Debug(msg+": "+err.Error(), fields)
		return
	}
	q.LoggerAdapter.Error(msg, err, fields)
}

func (q quietClose) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietClose{q.LoggerAdapter.With(fields), q.h}
}

// natsServerLogger adapts slog to nats-server's Logger interface.
type natsServerLogger struct{ l *slog.Logger }

func (n natsServerLogger) Noticef(format string, v ...any) { n.l.Info(clean(format, v)) }
func (n natsServerLogger) Warnf(format string, v ...any)   { n.l.Warn(clean(format, v)) }
func (n natsServerLogger) Fatalf(format string, v ...any)  { n.l.Error(clean(format, v)) }
func (n natsServerLogger) Errorf(format string, v ...any)  { n.l.Error(clean(format, v)) }
func (n natsServerLogger) Debugf(format string, v ...any)  { n.l.Debug(clean(format, v)) }
func (n natsServerLogger) Tracef(format string, v ...any)  { n.l.Debug(clean(format, v)) }

func clean(format string, v []any) string {
	return strings.TrimSpace(fmt.Sprintf(format, v...))
}
