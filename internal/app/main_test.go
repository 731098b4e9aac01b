package app_test

import (
	"os"
	"testing"

	"github.com/agentbus/agentbus/internal/mcpclient/mcptest"
)

// TestMain lets this test binary serve as the MCP test server over stdio
// when a test starts it as one (mcp_test.go).
func TestMain(m *testing.M) {
	mcptest.MainIfServer()
	os.Exit(m.Run())
}
