// Package e2e holds the tests that run agentbus as separate processes (the
// built cmd/<stage> binaries) against one NATS server, as in production.
package e2e
