package obs

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracingFromEnv returns the tracer provider the standard OpenTelemetry
// environment configures, or nil (tracing off) when it configures no
// exporter: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT unset, or OTEL_TRACES_EXPORTER=none
// (or OTEL_SDK_DISABLED=true). OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL picks
// "grpc" or "http/protobuf" (the default); the exporters read their own
// OTEL_EXPORTER_OTLP_* settings (headers, TLS, timeout, compression), the
// SDK reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*, and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. service is the default
// service.name ("agentbus", "agentbus-llm", ...).
//
// The returned shutdown flushes pending spans; call it on exit.
func TracingFromEnv(ctx context.Context, getenv func(string) string, service, version string) (trace.TracerProvider, func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, noop, nil
	}
	switch e := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); e {
	case "none":
		return nil, noop, nil
	case "", "otlp":
	default:
		return nil, noop, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: agentbus supports otlp and none", e)
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, noop, nil
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, noop, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
	}
	if err != nil {
		return nil, noop, fmt.Errorf("otlp trace exporter: %w", err)
	}
	tp, err := NewTracerProvider(ctx, sdktrace.NewBatchSpanProcessor(exp), service, version)
	if err != nil {
		return nil, noop, err
	}
	return tp, tp.Shutdown, nil
}

// NewTracerProvider returns an SDK tracer provider sending spans to sp,
// with the process's resource (service.name, service.version, and what
// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES set).
func NewTracerProvider(ctx context.Context, sp sdktrace.SpanProcessor, service, version string) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.version", version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res)), nil
}

// TracerName is the instrumentation scope of agentbus's own spans.
const TracerName = "github.com/agentbus/agentbus"
