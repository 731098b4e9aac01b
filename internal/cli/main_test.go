package cli_test

import (
	"os"
	"testing"

	"github.com/agentbus/agentbus/internal/cli"
)

// helperEnv makes the test binary run the CLI instead of the tests, so a
// test can run `agentbus` as a separate process (to send it signals).
const helperEnv = "CLI_TEST_RUN_AGENTBUS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(cli.Main(cli.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
	}
	os.Exit(m.Run())
}
