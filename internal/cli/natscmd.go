package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentbus/agentbus/internal/app"
	"github.com/agentbus/agentbus/internal/natsauth"
	"github.com/agentbus/agentbus/pipeline"
)

// natsCmd is `agentbus nats SUB`; dispatch has checked SUB.
func natsCmd(env Env, args []string) error {
	sub, args := args[0], args[1:]
	f := newFlags(env, "nats "+sub)
	data := f.str("data", "data", "data directory holding the authority (DIR/auth)")
	role := f.String("role", "", "role of the identity (creds, permissions)")
	name := f.String("name", "", "name of the identity: 1-64 of [A-Za-z0-9_-]; its inbox prefix is _INBOX_<name> (creds)")
	toolList := f.String("tools", "", "tool role: comma-separated tool names it may serve (default: its name)")
	expires := f.Duration("expires", 0, "lifetime of the credential (0: no expiry)")
	out := f.String("out", "", "write to this file (mode 0600) instead of stdout")
	confOut := f.String("config", "", "init: also write the server trust configuration to this file")
	credsDir := f.String("creds-dir", "", "init: also write a credential per stage role and the operator under this directory")
	contractFile := f.String("contract", "", "creds, permissions: a stage of your own, declared by its contract (JSON, see pipeline.ParseContract) instead of --role")
	if err := f.parse(args); err != nil {
		return err
	}
	dir := app.AuthDir(*data)
	switch sub {
	case "init":
		a, err := natsauth.LoadOrCreate(dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "NATS authority in %s (account %s)\n", dir, a.Account())
		if *confOut != "" {
			conf, err := a.ServerConfig()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(*confOut), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(*confOut, []byte(conf), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(env.Stderr, "server trust configuration in %s\n", *confOut)
		}
		if *credsDir != "" {
			for _, r := range append(app.AllStages, app.RoleOperator) {
				path := filepath.Join(*credsDir, r, "nats.creds")
				if fileExists(path) {
					continue
				}
				g, err := app.Grant(r, r, app.GrantOptions{})
				if err != nil {
					return err
				}
				b, err := a.Creds(r, g, 0)
				if err != nil {
					return err
				}
				if err := writeOut(env, path, b); err != nil {
					return err
				}
				fmt.Fprintf(env.Stderr, "credential for %s in %s\n", r, path)
			}
		}
		return nil
	case "creds":
		if (*role == "") == (*contractFile == "") || *name == "" {
			return fmt.Errorf("%w: nats creds --role ROLE --name NAME, or --contract FILE --name NAME", ErrUsage)
		}
		a, err := natsauth.Load(dir)
		if err != nil {
			return err
		}
		var tools []string
		if *toolList != "" {
			tools = strings.Split(*toolList, ",")
		}
		var g pipeline.Grant
		if *contractFile != "" {
			c, err := readContract(*contractFile)
			if err != nil {
				return err
			}
			if err := pipeline.ValidName(*name); err != nil {
				return fmt.Errorf("%w: %v: %q", ErrUsage, err, *name)
			}
			*role, g = c.Stage, c.Grant(*name)
		} else if g, err = app.Grant(*role, *name, app.GrantOptions{Tools: tools}); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
		b, err := a.Creds(*name, g, *expires)
		if err != nil {
			return err
		}
		if err := writeOut(env, *out, b); err != nil {
			return err
		}
		exp := "never"
		if *expires > 0 {
			exp = time.Now().Add(*expires).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(env.Stderr, "credential for %s (role %s) issued; inbox prefix %s; expires %s\n", *name, *role, g.Inbox, exp)
		return nil
	case "config":
		a, err := natsauth.Load(dir)
		if err != nil {
			return err
		}
		conf, err := a.ServerConfig()
		if err != nil {
			return err
		}
		if *out == "" {
			_, err = fmt.Fprint(env.Stdout, conf)
			return err
		}
		// Public keys and signed claims only: readable by the server's user.
		return os.WriteFile(*out, []byte(conf), 0o644)
	case "permissions":
		roles := app.Roles
		if *role != "" {
			roles = []string{*role}
		}
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tACTION\tSUBJECTS")
		if *contractFile != "" {
			c, err := readContract(*contractFile)
			if err != nil {
				return err
			}
			printGrant(tw, c.Stage, c.Grant("NAME"))
			return tw.Flush()
		}
		for _, r := range roles {
			g, err := app.Grant(r, "NAME", app.GrantOptions{})
			if err != nil {
				return fmt.Errorf("%w: %v", ErrUsage, err)
			}
			printGrant(tw, r, g)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("%w: unknown nats command %q", ErrUsage, sub)
	}
}

func printGrant(tw *tabwriter.Writer, role string, g pipeline.Grant) {
	if g.All {
		fmt.Fprintf(tw, "%s\tpub+sub\t> (everything in the account)\n", role)
		return
	}
	fmt.Fprintf(tw, "%s\tpub\t%s\n", role, strings.Join(g.Pub, " "))
	fmt.Fprintf(tw, "%s\tsub\t%s\n", role, strings.Join(g.Sub, " "))
	if g.Responses != 0 {
		n := fmt.Sprint(g.Responses)
		if g.Responses < 0 {
			n = "unlimited"
		}
		fmt.Fprintf(tw, "%s\treply\t%s message(s) to each request's reply subject within %s\n", role, n, g.ResponseTTL)
	}
}

// writeOut writes a secret to path (mode 0600, replacing it) or stdout.
func writeOut(env Env, path string, b []byte) error {
	if path == "" {
		_, err := env.Stdout.Write(b)
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	return natsauth.ReplaceSecret(path, b)
}

// readContract reads the contract of a stage of the operator's own. Its
// name may not be a built-in role's: a credential for it would look like
// that role's in logs and `nats permissions`.
func readContract(path string) (pipeline.Contract, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return pipeline.Contract{}, err
	}
	c, err := pipeline.ParseContract(b)
	if err != nil {
		return pipeline.Contract{}, fmt.Errorf("%w: %s: %v", ErrUsage, path, err)
	}
	if slices.Contains(app.Roles, c.Stage) {
		return pipeline.Contract{}, fmt.Errorf("%w: %s: stage %q is a built-in role: use --role %s, or another name", ErrUsage, path, c.Stage, c.Stage)
	}
	return c, nil
}
