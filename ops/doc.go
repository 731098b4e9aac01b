// Package ops holds agentbus's deployment configuration (nats-server.conf,
// the 3-node cluster configs) and the tests that keep it, the Dockerfile
// and docker-compose.yml true to the code: every file parses with the
// server's own parser, JetStream fsyncs before acknowledging, and every
// flag the compose file passes exists. See docs/operations.md.
package ops
